"""One streamed request, from a process of its own: `Streamer` in the tests starts it.

    python -m tests.conformance.stream_client URL '{"body": {...}, "headers": {...}}'

It prints ``status N`` when the answer's head arrives and ``first`` when the first SSE
event with data does, or ``error ...`` if the request fails; then it reads nothing more and
holds the connection open until its standard input closes (or it is killed), like a client
that stopped reading.

Why a process and not a thread of the test: hanging up is then a kill, which also ends a
request still waiting for its first event, with no thread left blocked in a read.
"""

from __future__ import annotations

import json
import sys

import httpx


def main() -> None:
    url, request = sys.argv[1], json.loads(sys.argv[2])
    # No read timeout: a request waiting behind others gets its first event only when they
    # end, however long that takes; the test ends this process when it is done with it.
    timeout = httpx.Timeout(120.0, read=None)
    try:
        with (
            httpx.Client(timeout=timeout) as http,
            http.stream("POST", url, json=request["body"], headers=request["headers"]) as answer,
        ):
            print(f"status {answer.status_code}", flush=True)
            # Held in a name: a line iterator dropped early would close the connection.
            lines = answer.iter_lines()
            for line in lines:
                if line.startswith("data: {"):
                    print("first", flush=True)
                    break
            # Read no further: the engine goes on generating, but nobody spends a CPU on
            # hundreds of events a second that the test does not need.
            sys.stdin.read()
    except httpx.HTTPError as error:
        print(f"error {error!r}", flush=True)


if __name__ == "__main__":
    main()
