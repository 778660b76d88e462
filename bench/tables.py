"""Measure the cost of recording a row and the rate of flushing rows to Delta.

    python bench/tables.py [--records 20000] [--fsync never|interval|always]

Prints microseconds per ``record_inference`` call for a ~1 KB record (spool append: orjson + one
``os.write``), alone and with the background flusher running, and rows per second written to Delta
by ``flush_now`` (spool read, Arrow conversion, one Delta commit per table).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import orjson

from modelport.tables.records import InferenceRecord, UsageRecord
from modelport.tables.writer import TableWriter


def _record(n: int) -> InferenceRecord:
    return InferenceRecord(
        f"req-{n:08d}",
        200,
        42,
        request='{"messages":[{"role":"user","content":"' + "x" * 300 + '"}]}',
        response='{"choices":[{"message":{"content":"' + "y" * 300 + '"}}]}',
        requester="alice@example.com",
        served_entity_name="chat-v1",
        request_metadata={"endpoint_name": "chat", "model_name": "m", "model_version": "1"},
    )


def _time_records(writer: TableWriter, count: int, start: int) -> list[float]:
    table = writer.payload_table("main", "default", "chat")
    records = [_record(start + i) for i in range(count)]
    times = []
    clock = time.perf_counter_ns
    for rec in records:
        t0 = clock()
        writer.record_inference(table, rec)
        times.append((clock() - t0) / 1000)
    return times


def _summary(label: str, times: list[float]) -> None:
    times = sorted(times)
    p = lambda q: times[int(q * (len(times) - 1))]  # noqa: E731
    print(
        f"{label}: mean {statistics.fmean(times):.1f} us, p50 {p(0.5):.1f} us, "
        f"p99 {p(0.99):.1f} us, p99.9 {p(0.999):.1f} us, max {times[-1]:.0f} us "
        f"per record ({len(times)} records)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--fsync", choices=["never", "interval", "always"], default="never")
    args = parser.parse_args()
    print(f"record size: {len(orjson.dumps(_record(0)))} bytes of JSON")
    with tempfile.TemporaryDirectory() as tmp:
        writer = TableWriter(f"{tmp}/tables", f"{tmp}/spool", fsync=args.fsync)
        writer.open()
        _summary("record_inference, no flusher", _time_records(writer, args.records, 0))
        usage = [
            UsageRecord(f"u{i}", "chat", 200, input_token_count=10, output_token_count=20)
            for i in range(args.records)
        ]
        t0 = time.perf_counter()
        for rec in usage:
            writer.record_usage(rec)
        print(f"record_usage: mean {(time.perf_counter() - t0) / len(usage) * 1e6:.1f} us per record")
        t0 = time.perf_counter()
        flushed = writer.flush_now()
        elapsed = time.perf_counter() - t0
        print(f"flush_now: {flushed} rows (2 tables) in {elapsed:.2f} s = {flushed / elapsed:,.0f} rows/s")
        writer.start_thread()
        times: list[float] = []
        for burst in range(10):  # bursts with pauses, as a server sees them; the flusher runs between
            times += _time_records(writer, args.records // 10, args.records * (burst + 1))
            time.sleep(0.1)
        writer.close()
        _summary("record_inference, flusher running", times)
        print("stats:", writer.stats.as_dict())


if __name__ == "__main__":
    main()
