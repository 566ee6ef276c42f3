"""The engine's own chunk frames passed on as they came (`upstream.Response.splice` with
``frames``), on real sockets: byte for byte where the body starts on a frame boundary the
router knows, framed again where it does not, and what a stream broken off inside a frame
becomes.

The engine here writes its chunk sizes in a way of its own (four upper-case hex digits,
which the router's framing never produces), so the client's bytes show whose frames they
are.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmservice.router.config import Timeouts
from llmservice.router.upstream import _whole_frames

from .conftest import CHAT, Answers, RouterServer, config, run, scripted_engine, until

REQUEST = json.dumps({**CHAT, "stream": True}).encode()
POST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(REQUEST)).encode() + b"\r\n\r\n" + REQUEST
)
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENTS = [b'data: {"n": %d, "text": "token %d"}\n\n' % (n, n) for n in range(6)] + [
    b'data: {"usage": {"prompt_tokens": 7, "completion_tokens": 6}}\n\n',
    b"data: [DONE]\n\n",
]
LAST_CHUNK = b"0\r\n\r\n"
# The router's own spelling of a chunk size: lower-case hex without a leading zero.
ROUTER_SIZE = re.compile(rb"0|[1-9a-f][0-9a-f]*")
SIZE_LINE = re.compile(rb"(?:^|\r\n)([0-9A-Fa-f]+)\r\n")


def frame(data: bytes) -> bytes:
    return b"%04X\r\n%b\r\n" % (len(data), data)


def routers_frame(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


BODY = b"".join(frame(event) for event in EVENTS) + LAST_CHUNK


class Engine:
    """An engine that answers each request on a connection with the next plan's writes; a
    plan ending in None closes the connection there. Each write waits until the router
    (``router``, set once it runs) has read the ones before and waits for more, so that
    each is a read of its own, whatever the machine's load."""

    def __init__(self, *plans: list[bytes | None]) -> None:
        self.plans = list(plans)
        self.connections = 0
        self.requests = 0
        self.closed = asyncio.Event()
        self.router: RouterServer | None = None

    def _caught_up(self, written: int) -> bool:
        assert self.router is not None
        assert self.router.app.proxy.pool is not None
        return any(
            connection.reads >= written
            and (connection.waiter is not None or connection.complete or connection.closed)
            for connection in self.router.app.proxy.pool._open
        )

    async def write(self, writer: asyncio.StreamWriter, piece: bytes, written: int) -> None:
        """Write the ``written``-th piece of an answer, once the router has read the rest."""
        await until(lambda: written == 1 or self._caught_up(written - 1))
        writer.write(piece)
        await writer.drain()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the router let the connection go
                length = re.search(rb"(?i)content-length: (\d+)", head)
                assert length is not None
                await reader.readexactly(int(length.group(1)))
                self.requests += 1
                for written, piece in enumerate(self.plans.pop(0), 1):
                    if piece is None:
                        await until(lambda n=written: self._caught_up(n - 1))  # type: ignore[misc]
                        return
                    await self.write(writer, piece, written)
        finally:
            writer.close()
            self.closed.set()


async def ask(port: int) -> Answers:
    """One streamed request on a new connection, read to its answer's end."""
    answers = Answers()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(POST)
    await answers.read(reader, 1)
    writer.close()
    return answers


def body_bytes(answers: Answers) -> bytes:
    """The first answer's body as it went over the wire, framing included."""
    return bytes(answers.raw).split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1 ", 1)[0]


def relayed(plan: list[bytes | None]) -> tuple[Answers, dict[str, Any]]:
    """The answer an `Engine` writes by ``plan``, as a client of a router in front of it
    read it (to its end), and the router's access log line of it."""

    async def scenario() -> tuple[Answers, dict[str, Any]]:
        engine = Engine(plan)
        server, url = await scripted_engine(engine.handle)
        async with server, RouterServer(config(url)) as router:
            engine.router = router
            answers = await ask(router.port)
            await until(lambda: len(router.log_lines()) == 1)
            return answers, router.log_lines()[0]

    return run(scenario())


def test_the_engines_frames_reach_the_client_as_they_came() -> None:
    answers, line = relayed([HEAD, *(frame(event) for event in EVENTS), LAST_CHUNK])
    assert bytes(answers.bodies[0]) == b"".join(EVENTS)
    assert body_bytes(answers) == BODY  # the engine's own framing, byte for byte
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (200, 7, 6)
    assert line["ttfb_ms"] is not None


def test_parts_that_came_with_the_head_are_framed_again_and_the_engines_frames_follow() -> None:
    first = EVENTS[0] + EVENTS[1]
    plan: list[bytes | None] = [HEAD + frame(EVENTS[0]) + frame(EVENTS[1])]
    plan += [frame(event) for event in EVENTS[2:]] + [LAST_CHUNK]
    answers, _ = relayed(plan)
    rest = b"".join(frame(event) for event in EVENTS[2:])
    assert body_bytes(answers) == routers_frame(first) + rest + LAST_CHUNK


def test_a_read_that_ends_inside_a_frame_keeps_the_routers_framing() -> None:
    cut = frame(EVENTS[0])
    answers, line = relayed(
        [HEAD + cut[:9], cut[9:], *(frame(event) for event in EVENTS[1:]), LAST_CHUNK]
    )
    assert bytes(answers.bodies[0]) == b"".join(EVENTS)
    body = body_bytes(answers)
    assert frame(EVENTS[1]) not in body  # none of the engine's frames as they came
    sizes = SIZE_LINE.findall(body)
    # The router's frames: the first event in two (as its reads brought it), each other
    # event in one, and the last chunk.
    assert len(sizes) == len(EVENTS) + 2
    assert all(ROUTER_SIZE.fullmatch(size) for size in sizes)
    assert line["completion_tokens"] == 6


@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=6),
    extension=st.sampled_from([b"", b";x=1", b' ;name="a b"']),
    digits=st.sampled_from([b"%x", b"%X", b"%04x"]),
    data=st.data(),
)
def test_whole_frames_are_told_by_their_sizes_from_any_boundary(
    sizes: list[int], extension: bytes, digits: bytes, data: st.DataObject
) -> None:
    """A read is whole frames exactly when it ends where a frame does (the size lines'
    spellings, extensions and the frames' contents, CRLFs included, notwithstanding)."""
    frames = [
        digits % size
        + extension
        + b"\r\n"
        + data.draw(st.binary(min_size=size, max_size=size))
        + b"\r\n"
        for size in sizes
    ]
    stream = b"".join(frames)
    ends = {0}
    for piece in frames:
        ends.add(max(ends) + len(piece))
    start = data.draw(st.sampled_from(sorted(ends - {len(stream)})))
    for end in range(start, len(stream) + 1):
        assert _whole_frames(stream[:end], start) == (end in ends), end
    assert not _whole_frames(stream + LAST_CHUNK, start)  # the last chunk ends the body


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(1, len(HEAD) + len(BODY) - 1), max_size=6, unique=True))
def test_any_reads_of_the_engines_answer_reach_the_client_whole(cuts: list[int]) -> None:
    """Wherever the engine's answer is cut into reads, the client gets every event once,
    in valid framing; the usage is counted when its event is in the answer's last two
    reads (where the router looks for it when it frames the parts again, and always when
    the engine's frames went on as they came)."""
    whole = HEAD + BODY
    points = [0, *sorted(cuts), len(whole)]
    usage_at = len(whole) - len(frame(EVENTS[-2]) + frame(EVENTS[-1]) + LAST_CHUNK)
    usage_in_tail = len([point for point in points[1:-1] if point > usage_at]) <= 1
    answers, line = relayed([whole[a:b] for a, b in itertools.pairwise(points)])
    assert bytes(answers.bodies[0]) == b"".join(EVENTS)
    if usage_in_tail:
        assert line["completion_tokens"] == 6


def test_a_stream_broken_off_between_the_engines_frames_ends_with_an_error_event() -> None:
    answers, line = relayed([HEAD, frame(EVENTS[0]), frame(EVENTS[1]), None])
    # A whole answer (`ask` reads to its end), the error event its last part.
    events = bytes(answers.bodies[0]).split(b"\n\n")
    assert events[:2] == [EVENTS[0][:-2], EVENTS[1][:-2]]
    error = json.loads(events[2][len(b"data: ") :])
    assert error["error"]["code"] == "upstream_protocol_error"
    assert body_bytes(answers).startswith(frame(EVENTS[0]) + frame(EVENTS[1]))
    assert line["cause"] == "upstream_protocol"


def test_a_stream_broken_off_inside_a_frame_closes_the_clients_connection() -> None:
    """Nothing of the router's own can follow half a frame: the client's HTTP client sees
    the body cut off, the one way left to say the answer is incomplete."""

    async def scenario() -> None:
        half = frame(EVENTS[1])[:12]
        engine = Engine([HEAD, frame(EVENTS[0]), half, None])
        server, url = await scripted_engine(engine.handle)
        async with server, RouterServer(config(url)) as router:
            engine.router = router
            answers = Answers()
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(POST)
            await answers.read_to_close(reader)
            writer.close()
            assert answers.complete == 0
            assert body_bytes(answers) == frame(EVENTS[0]) + half
            await until(lambda: len(router.log_lines()) == 1)
            assert router.log_lines()[0]["cause"] == "upstream_protocol"

    run(scenario())


def test_an_idle_timeout_inside_a_frame_closes_and_between_frames_ends_with_an_event() -> None:
    async def scenario() -> None:
        stall = asyncio.get_running_loop().create_future()
        half = frame(EVENTS[1])[:12]

        class Stalling(Engine):
            async def handle(
                self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                self.connections += 1
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(len(REQUEST))
                for written, piece in enumerate(self.plans.pop(0), 1):
                    assert piece is not None
                    await self.write(writer, piece, written)
                await reader.read()  # stalls until the router drops the connection
                writer.close()
                if not self.plans:
                    stall.set_result(None)

        engine = Stalling([HEAD, frame(EVENTS[0]), half], [HEAD, frame(EVENTS[0])])
        server, url = await scripted_engine(engine.handle)
        async with server, RouterServer(config(url, timeouts=Timeouts(idle=0.3))) as router:
            engine.router = router
            inside = Answers()
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(POST)
            await inside.read_to_close(reader)
            writer.close()
            assert (inside.complete, body_bytes(inside)) == (0, frame(EVENTS[0]) + half)
            between = await ask(router.port)
            assert between.complete == 1
            events = bytes(between.bodies[0]).split(b"\n\n")
            assert events[0] == EVENTS[0][:-2]
            assert "idle" in json.loads(events[1][len(b"data: ") :])["error"]["message"]
            # The connection the router read its own last chunk into is not used again.
            await asyncio.wait_for(stall, 10)
            assert engine.connections == 2

    run(scenario())


def test_the_engines_trailer_passes_and_the_connections_stay_alive() -> None:
    async def scenario() -> None:
        plan = [HEAD, frame(EVENTS[0]), b"0\r\nx-engine-trailer: 1\r\n\r\n"]
        engine = Engine(plan, list(plan))
        server, url = await scripted_engine(engine.handle)
        async with server, RouterServer(config(url)) as router:
            engine.router = router
            answers = Answers()
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            for count in (1, 2):
                writer.write(POST)
                await answers.read(reader, count)
            writer.close()
            assert [bytes(body) for body in answers.bodies] == [EVENTS[0], EVENTS[0]]
            assert bytes(answers.raw).count(b"x-engine-trailer: 1\r\n\r\n") == 2
            assert (engine.connections, engine.requests) == (1, 2)

    run(scenario())
