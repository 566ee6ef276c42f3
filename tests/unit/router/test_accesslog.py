"""The access log holds its lines and writes them together (one write, whole lines)."""

from __future__ import annotations

import io
import json
import os
import threading
import time

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


def test_a_full_non_blocking_standard_output_is_waited_for_not_spun_on_and_loses_no_line() -> None:
    # Unbuffered standard output (PYTHONUNBUFFERED=1, as in the image) is a raw file; on a
    # non-blocking pipe that is full, its write takes nothing and returns None.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    stream = io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=True)
    log = AccessLog(stream)
    count = 2_000  # far more than a pipe holds
    received = bytearray()
    writer_cpu: list[float] = []

    def drain() -> None:
        time.sleep(0.5)  # the pipe fills first, and stays full for a while
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)

    def write() -> None:
        started = time.thread_time()
        write_lines(log, count)  # each full hold is written at once
        log.flush()
        writer_cpu.append(time.thread_time() - started)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=30)
    assert not writer.is_alive(), "the flush never ended"
    stream.close()  # the reader sees the end
    reader.join(timeout=30)
    os.close(read_end)
    lines = received.decode().splitlines()
    assert len(lines) == count
    assert all(json.loads(line)["msg"] == "request" for line in lines)
    # Waiting costs no CPU; writing again and again into the full pipe costs it all.
    assert writer_cpu[0] < 0.25
