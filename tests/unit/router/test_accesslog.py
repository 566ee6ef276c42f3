"""The access log holds its lines and writes them together (one write, whole lines)."""

from __future__ import annotations

import io
import json

from llmservice.router.accesslog import MAX_PENDING_LINES, AccessLog
from llmservice.router.proxy import Exchange


class CountingStream(io.StringIO):
    """A stream that counts the writes it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def write_lines(log: AccessLog, count: int) -> None:
    for n in range(count):
        exchange = Exchange(request_id=f"r{n}", route="/v1/chat/completions", model="m")
        exchange.status = 200
        log.write(exchange, "POST", "/v1/chat/completions", 0.01, None)


def test_lines_are_held_until_flush_then_written_in_one_write() -> None:
    stream = CountingStream()
    log = AccessLog(stream)
    write_lines(log, 3)
    assert stream.getvalue() == ""
    log.flush()
    assert stream.writes == 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["r0", "r1", "r2"]
    log.flush()  # nothing held: nothing written
    assert stream.writes == 1


def test_a_full_hold_is_written_without_waiting_for_flush() -> None:
    stream = CountingStream()
    log = AccessLog(stream)
    write_lines(log, MAX_PENDING_LINES - 1)
    assert stream.writes == 0
    write_lines(log, 1)
    assert stream.writes == 1
    assert len(stream.getvalue().splitlines()) == MAX_PENDING_LINES
    assert stream.getvalue().endswith("\n")


def test_a_disabled_log_holds_nothing() -> None:
    stream = CountingStream()
    log = AccessLog(stream, enabled=False)
    write_lines(log, 2)
    log.flush()
    assert stream.getvalue() == ""


def test_lines_go_out_as_utf8_json_whatever_the_streams_encoding() -> None:
    # Standard output may be ASCII (a bare C locale): the lines go to its binary layer as
    # UTF-8, after what was written to it as text, and non-ASCII values are kept as sent.
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    log = AccessLog(stream)
    stream.write("before\n")
    exchange = Exchange(request_id="r1", route="/v1/chat/completions", model="modèle-日本")
    exchange.status = 200
    exchange.session, exchange.key_kind = "séance", "session"
    log.write(exchange, "POST", "/v1/chat/completions", 0.0123456, 0.001)
    log.flush()
    first, line = raw.getvalue().decode("utf-8").splitlines()
    assert first == "before"
    record = json.loads(line)
    assert (record["model"], record["session"]) == ("modèle-日本", "séance")
    assert (record["latency_ms"], record["ttfb_ms"]) == (12.346, 1.0)
    assert list(record)[:3] == ["time", "level", "msg"]
