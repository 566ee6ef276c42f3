"""Generated and mutated requests, on a real socket, to every route of a real router.

Whatever arrives, the router answers: never a 5xx of its own (the engine here always
answers 200, so every 5xx would be the router's), every 4xx in the OpenAI error shape with
the request id, within a per-request timeout; and it is alive afterwards.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import string
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmservice.router.routes import ROUTES

from .backends import FakeBackend, Mode
from .conftest import RouterServer, config
from .test_routes import BODIES

MAX_BODY = 64 * 1024
REQUEST_TIMEOUT = 10.0


class RouterThread:
    """A router in front of an engine that always answers 200, on a loop in a thread."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._serve())
        except BaseException as error:  # reported to the test thread
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with (
            FakeBackend(Mode.STATUS, status=200) as backend,
            RouterServer(config(backend.url, max_body_bytes=MAX_BODY)) as router,
        ):
            self.port = router.port
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> RouterThread:
        self._thread.start()
        assert self._ready.wait(30), "the router did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def router() -> Iterator[RouterThread]:
    with RouterThread() as running:
        yield running


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def _send_and_read(sock: socket.socket, request: bytes) -> bytes:
    """Everything the server sends until it closes, read while the request is still going
    out: a server may answer (a 405, a 413) and close before the whole body was sent, and
    a client that only reads once it has sent everything can lose that answer to the reset.
    """
    data, left = b"", memoryview(request)
    deadline = time.monotonic() + REQUEST_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no full answer in {REQUEST_TIMEOUT} s")
            for _, events in selector.select(remaining):
                if events & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        if not data:
                            raise
                        return data
                    if not chunk:
                        return data
                    data += chunk
                if events & selectors.EVENT_WRITE and left:
                    try:
                        left = left[sock.send(left) :]
                    except (BrokenPipeError, ConnectionResetError):
                        left = left[:0]  # the server stopped reading; its answer follows
                    if not left:
                        selector.modify(sock, selectors.EVENT_READ)


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request with ``Connection: close``; the status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.setblocking(False)
        data = _send_and_read(sock, request)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:200]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(lines[0][9:12]), headers, body


# -- requests -------------------------------------------------------------------------------

_TOKEN = string.ascii_letters + string.digits + "-_.~"
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_MODELS = st.sampled_from(["llama", "gpt-3.5-turbo", "gpt-4", "", None, 3, ["llama"]])


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body = dict(draw(st.sampled_from(list(BODIES.values()))))
    model = draw(_MODELS)
    if model is not None:
        body["model"] = model
    body.update(draw(st.dictionaries(st.sampled_from(["stream", "user", "x", "n"]), _JSON)))
    return body


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = json.dumps(draw(valid_bodies())).encode()
    at = draw(st.integers(0, len(raw)))
    kind = draw(st.sampled_from(["insert", "replace", "truncate"]))
    junk = draw(st.binary(min_size=1, max_size=8))
    if kind == "insert":
        return raw[:at] + junk + raw[at:]
    if kind == "replace":
        return raw[:at] + junk + raw[at + len(junk) :]
    return raw[:at]


def _in_content(text: bytes) -> bytes:
    return b'{"model": "llama", "messages": [{"role": "user", "content": "' + text + b'"}]}'


HOSTILE = st.one_of(
    st.integers(200, 20_000).map(
        lambda n: b'{"model": "llama", "x": ' + b"[" * n + b"]" * n + b"}"
    ),
    st.integers(200, 20_000).map(
        lambda n: b'{"model": "llama", "messages": ' + b'[{"a":' * n + b"1" + b"}]" * n + b"}"
    ),
    st.integers(20, 10_000).map(lambda n: b'{"model": ' + b"9" * n + b"}"),
    st.integers(20, 10_000).map(
        lambda n: _in_content(b"x")[:-1] + b', "seed": -' + b"9" * n + b"}"
    ),
    st.sampled_from([b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\uDBFF\\uDBFF"]).map(
        _in_content
    ),
    st.binary(min_size=1, max_size=6).map(lambda junk: _in_content(b"a" + junk)),
    st.integers(1, 40_000).map(lambda n: b'{"model": "llama", "x": [' + b"0," * n + b"0]}"),
    st.just(b"x" * (MAX_BODY + 1)),
)
BODY = st.one_of(
    _JSON.map(lambda value: json.dumps(value).encode()),
    valid_bodies().map(lambda value: json.dumps(value).encode()),
    mutated(),
    HOSTILE,
    st.binary(max_size=200),
)
PATHS = st.one_of(
    st.sampled_from(
        [
            *ROUTES,
            "/v1/models",
            "/v1/models/llama",
            "/v1/models/gpt-4",
            "/v1/models/a%2Fb",
            "/healthz",
            "/health",
            "/readyz",
            "/metrics",
            "/",
            "/v1/chat/completions/",
            "//v1/completions",
            "/v1/responses/resp_1",
            "/%ff%00",
        ]
    ),
    st.text(alphabet=_TOKEN + "/%", max_size=30).map(lambda text: "/" + text),
)
QUERY = st.sampled_from(["", "?stream=true", "?a=%ff", "?" + "q" * 500])
METHODS = st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        ";;;",
    ]
)
HEADERS = st.dictionaries(
    st.sampled_from(["X-Session-ID", "X-Request-ID", "Authorization", "Accept", "X-Odd"]),
    _VALUE,
    max_size=4,
)


class Request:
    """The bytes of one request; shown cut short, so a failing example prints readably."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        shown = self.raw if len(self.raw) <= 600 else self.raw[:600] + b"..."
        return f"Request({len(self.raw)} bytes: {shown!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method, path = draw(METHODS), draw(PATHS) + draw(QUERY)
    body = draw(BODY)
    lines = [f"{method} {path} HTTP/1.1", "Host: router", "Connection: close"]
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{name}: {value}" for name, value in draw(HEADERS).items()]
    lines.append(f"Content-Length: {len(body)}")
    return Request(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def check_answer(request: bytes, status: int, headers: dict[str, str], body: bytes) -> None:
    assert status < 500, (status, body[:300], request[:300])
    if status < 400:
        return
    error = json.loads(body)["error"]
    assert isinstance(error["message"], str), body
    assert isinstance(error["type"], str), body
    assert "param" in error, body
    assert "code" in error, body
    assert error["request_id"] == headers["x-request-id"], (headers, body)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(request=requests())
def test_no_request_gets_a_5xx_or_a_bare_error(router: RouterThread, request: Request) -> None:
    status, headers, body = exchange(router.port, request.raw)
    check_answer(request.raw, status, headers, body)


def test_the_router_is_alive_after_the_fuzzing(router: RouterThread) -> None:
    status, _, body = exchange(
        router.port, b"GET /healthz HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"
    )
    assert (status, json.loads(body)["status"]) == (200, "ok")
