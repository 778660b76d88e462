"""The loopback OpenAI fake as the benchmarks run it: the test fake's app, keeping only recent requests.

``tests/fakes/openai_server.py`` records every request it gets so that tests can inspect
them. At 10,000+ requests a second for a whole benchmark run that list would grow by
gigabytes, and the garbage collector's passes over it would show up in every peer's p99.
Here it keeps the last few. Everything else (routes, answers, uvloop + httptools through
uvicorn's defaults, no access log) is the test fake unchanged.

Run from the repository root: ``python -m bench.peers.openai_fake --port 8199``.
"""

from __future__ import annotations

import argparse
import collections

import uvicorn

from tests.fakes.openai_server import FakeOpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    app = FakeOpenAI()
    app.requests = collections.deque(maxlen=16)  # type: ignore[assignment]  # append/clear/reversed only
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
