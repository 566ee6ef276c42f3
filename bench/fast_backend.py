"""A deliberately minimal OpenAI-shaped HTTP/1.1 backend for benchmarks.

It answers every POST at once from a raw asyncio protocol (uvloop + httptools), so a
benchmark measures the router and not the backend: a JSON chat completion, or, when the body
asks for ``"stream": true``, an SSE stream of ``--chunks`` events (chunked encoding) followed
by ``data: [DONE]``. GET requests get a small JSON body (``/health``, ``/v1/models``).

    python -m bench.fast_backend --port 18001 --chunks 64
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools
import uvloop

_JSON_BODY = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello from the bench backend"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
).encode()


def _json_response(body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _sse_parts(chunks: int) -> list[bytes]:
    parts = []
    for i in range(chunks):
        event = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
        }
        parts.append(_chunk(b"data: " + json.dumps(event).encode() + b"\n\n"))
    parts.append(_chunk(b"data: [DONE]\n\n"))
    parts.append(b"0\r\n\r\n")
    return parts


def _sse_response(chunks: int) -> bytes:
    return _SSE_HEAD + b"".join(_sse_parts(chunks))


class _Protocol(asyncio.Protocol):
    def __init__(self, chunks: int, sse_delay: float) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._body: list[bytes] = []
        self._chunks = chunks
        self._sse_delay = sse_delay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = b"".join(self._body)
        if self._parser.get_method() == b"GET":
            transport.write(_json_response(b'{"object":"list","data":[]}'))
        elif b'"stream": true' in body or b'"stream":true' in body:
            if self._sse_delay > 0:
                asyncio.get_running_loop().create_task(self._slow_stream(transport))
            else:
                transport.write(_SSE_CACHE.setdefault(self._chunks, _sse_response(self._chunks)))
        else:
            transport.write(_JSON_RESPONSE)

    async def _slow_stream(self, transport: asyncio.Transport) -> None:
        transport.write(_SSE_HEAD)
        for part in _sse_parts(self._chunks):
            await asyncio.sleep(self._sse_delay)
            if transport.is_closing():
                return
            transport.write(part)


_JSON_RESPONSE = _json_response(_JSON_BODY)
_SSE_CACHE: dict[int, bytes] = {}


async def serve(host: str, port: int, chunks: int, sse_delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Protocol(chunks, sse_delay), host, port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18001)
    parser.add_argument("--chunks", type=int, default=64, help="SSE events per streamed reply")
    parser.add_argument("--sse-delay", type=float, default=0.0, help="seconds between events")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.chunks, args.sse_delay))


if __name__ == "__main__":
    main()
