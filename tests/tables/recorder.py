"""A process that records rows through the real TableWriter, for the durability tests.

    python -m tests.tables.recorder ROOT SPOOL --count N [--prefix P] [--crash-after-commit]
        [--usage-only] [--max-batch B] [--flush-every K]

Prints each request id on its own line (flushed) *after* ``record_inference`` and ``record_usage``
returned, as the server answers a client only after recording. The flusher runs in the background with
a short interval, so a ``kill -9`` lands between, during and after Delta commits.

``--flush-every K`` flushes synchronously every K records instead (many commits, for the test of
two processes writing one table).

``--crash-after-commit`` kills the process (SIGKILL) right after its first Delta commit, before the
spool is told, to leave the commit-then-crash state that recovery must deduplicate.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from modelport.tables.records import InferenceRecord, UsageRecord
from modelport.tables.spool import Spool
from modelport.tables.writer import TableWriter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("spool")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--prefix", default="req")
    parser.add_argument("--max-batch", type=int, default=200)
    parser.add_argument("--crash-after-commit", action="store_true")
    parser.add_argument("--usage-only", action="store_true")
    parser.add_argument("--flush-every", type=int, default=0, help="flush_now() every N records, no thread")
    args = parser.parse_args()

    if args.crash_after_commit:

        def die(self: Spool, segment: object, table_key: bytes) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        Spool.mark_table_done = die  # type: ignore[method-assign]

    writer = TableWriter(args.root, args.spool, flush_interval=0.02, max_batch=args.max_batch)
    writer.open()
    table = writer.payload_table("main", "default", "chat")
    body = "x" * 300
    if args.crash_after_commit:
        for i in range(args.count):
            _record(writer, table, f"{args.prefix}-{i}", body, args.usage_only)
        print("RECORDED", flush=True)
        writer.flush_now()  # dies inside, after the first commit
        print("NOT KILLED", flush=True)
        return
    if not args.flush_every:
        writer.start_thread()
    out = sys.stdout
    for i in range(args.count):
        rid = f"{args.prefix}-{i}"
        _record(writer, table, rid, body, args.usage_only)
        out.write(rid + "\n")
        out.flush()
        if args.flush_every and (i + 1) % args.flush_every == 0:
            writer.flush_now()
    writer.close()
    print("DONE", flush=True)


def _record(writer: TableWriter, table: object, rid: str, body: str, usage_only: bool) -> None:
    if not usage_only:
        writer.record_inference(
            table,  # type: ignore[arg-type]
            InferenceRecord(rid, 200, 5, request=f'{{"q":"{body}"}}', response=f'{{"a":"{body}"}}'),
        )
    writer.record_usage(
        UsageRecord(rid, "chat", 200, requester="u", input_token_count=3, output_token_count=4)
    )


if __name__ == "__main__":
    main()
