"""The shared closed-loop load generator: N kept-open connections, N requests in flight.

Each connection sends a request, waits for the whole answer, records the latency and sends
the next one, until the cell's time is up; a warm-up run of the same shape comes first and
is not counted. Two drivers give the same `CellResult`:

- ``wrk`` (C, one thread, Debian's ``wrk`` package) when it is on PATH: it costs the least
  CPU, which matters because client and server share the same 2 cores;
- a pure-asyncio fallback (uvloop when installed) speaking HTTP/1.1 keep-alive with
  pre-encoded request bytes and only as much parsing as Content-Length or chunked framing
  needs.

Run alone for a quick look: ``python bench/loadgen.py URL --body '{"a": 1}' -c 8``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["CellResult", "Load", "driver_name", "run_cell"]


@dataclass(frozen=True)
class Load:
    """One cell's traffic: where to send what, how many at once, for how long."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    concurrency: int
    duration: float = 5.0
    warmup: float = 1.0
    timeout: float = 30.0


@dataclass(frozen=True)
class CellResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def driver_name(prefer: str = "auto") -> str:
    """``wrk`` when it is installed (and not refused), else ``python``."""
    if prefer == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if prefer == "wrk":
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    return "python"


def run_cell(load: Load, driver: str = "auto") -> CellResult:
    """Warm up, then measure one cell; blocks for about ``warmup + duration`` seconds."""
    if driver_name(driver) == "wrk":
        if load.warmup > 0:
            _run_wrk(load, load.warmup)
        return _run_wrk(load, load.duration)
    return asyncio.run(_run_python(load))


# -- wrk --------------------------------------------------------------------------------------

_WRK_SCRIPT = """\
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-RESULT {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,"
    .. "\\"status\\":%d,\\"other\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def _run_wrk(load: Load, seconds: float) -> CellResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_path = Path(tmp, "body")
        body_path.write_bytes(load.body)
        headers = "\n".join(
            f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}"
            for k, v in {"Content-Type": "application/json", **load.headers}.items()
        )
        script = Path(tmp, "post.lua")
        script.write_text(_WRK_SCRIPT.format(body_path=_lua_string(str(body_path)), headers=headers))
        # One thread: the client shares the machine with the server, so it should use as
        # little CPU as it can; one wrk thread drives far more than any peer here answers.
        cmd = [
            "wrk",
            "-t1",
            f"-c{load.concurrency}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={int(load.timeout)}s",
            "-s",
            str(script),
            load.url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + load.timeout + 30)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            data = json.loads(line.removeprefix("BENCH-RESULT "))
            # wrk counts answers with a non-2xx/3xx status in "requests" too.
            return CellResult(
                requests=max(0, data["requests"] - data["status"]),
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=data["status"] + data["other"],
            )
    raise RuntimeError(
        f"wrk gave no result (exit {out.returncode}): {out.stderr.strip() or out.stdout[-500:]}"
    )


# -- pure asyncio -----------------------------------------------------------------------------


def _request_bytes(load: Load) -> tuple[str, int, bytes]:
    parts = urlsplit(load.url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(load.body)}",
        *(f"{k}: {v}" for k, v in load.headers.items()),
    ]
    return host, port, ("\r\n".join(head) + "\r\n\r\n").encode() + load.body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one whole response and return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length > 0:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str, port: int, request: bytes, stop_at: float, timeout: float, latencies: list[float]
) -> int:
    errors = 0
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    now = time.perf_counter
    while now() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            start = now()
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), timeout)
            if 200 <= status < 400:
                latencies.append(now() - start)
            else:
                errors += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            errors += 1
            if writer is not None:
                writer.close()
            writer = reader = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return errors


async def _closed_loop(load: Load, seconds: float) -> CellResult:
    host, port, request = _request_bytes(load)
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(
        *(_connection(host, port, request, stop_at, load.timeout, latencies) for _ in range(load.concurrency))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return CellResult(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=_percentile(latencies, 50) * 1000,
        p99_ms=_percentile(latencies, 99) * 1000,
        errors=sum(errors),
    )


def _percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def _run_python(load: Load) -> CellResult:
    if load.warmup > 0:
        await _closed_loop(load, load.warmup)
    return await _closed_loop(load, load.duration)


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


_install_uvloop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--body", default="{}", help="request body (JSON text)")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--driver", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    load = Load(
        url=args.url,
        body=args.body.encode(),
        headers={k.strip(): v.strip() for k, v in headers.items()},
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
    )
    result = run_cell(load, args.driver)
    print(
        f"{driver_name(args.driver)}: {result.rps:,.0f} req/s  p50 {result.p50_ms:.2f} ms  "
        f"p99 {result.p99_ms:.2f} ms  errors {result.errors}  ({result.requests} in {result.seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
