"""A kill -9 loses no recorded row; a crash between the Delta commit and the spool mark duplicates none."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from modelport.tables.writer import TableWriter
from tests.support.tables import id_counts, recorder


def _commits(table_uri: str) -> int:
    log = Path(table_uri) / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def test_kill_9_mid_burst_loses_no_answered_request(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    proc = recorder(root, spool, "--count", "1000000")
    writer = TableWriter(root, spool)
    inference_uri = writer.payload_table("main", "default", "chat").uri
    assert proc.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 20
    # Let it record and flush for a while: at least two commits to each table, and rows after them.
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "recorder ended"
        printed.append(line.strip())
        if len(printed) % 200 == 0 and _commits(inference_uri) >= 2 and _commits(writer.usage.uri) >= 2:
            break
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=10)
    printed += [line for line in rest.splitlines() if line]
    assert proc.returncode == -signal.SIGKILL
    assert "DONE" not in printed

    before = id_counts(inference_uri, "databricks_request_id")
    assert len(before) > 0, "some batches were committed before the kill"

    replayed = writer.recover()
    stats = writer.stats
    writer.close()

    assert replayed > 0
    for uri, column in ((inference_uri, "databricks_request_id"), (writer.usage.uri, "request_id")):
        counts = id_counts(uri, column)
        missing = [rid for rid in printed if counts[rid] == 0]
        assert not missing, f"{len(missing)} answered requests lost, e.g. {missing[:3]}"
        twice = [rid for rid, n in counts.items() if n > 1]
        assert not twice, f"ids written twice: {twice[:3]}"
    assert stats.failed == 0 and stats.rejected == 0
    assert list(Path(spool).glob("*.seg")) == []


def test_crash_between_commit_and_spool_mark_is_deduplicated(dirs: tuple[str, str]) -> None:
    root, spool = dirs
    proc = recorder(root, spool, "--count", "300", "--crash-after-commit")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert "RECORDED" in out and "NOT KILLED" not in out

    writer = TableWriter(root, spool)
    inference_uri = writer.payload_table("main", "default", "chat").uri
    in_delta = sum(
        id_counts(uri, col).total()
        for uri, col in ((inference_uri, "databricks_request_id"), (writer.usage.uri, "request_id"))
    )
    assert in_delta == 300, "exactly one table's batch was committed before the kill"

    writer.recover()
    stats = writer.stats
    writer.close()
    assert stats.deduplicated == 300
    assert stats.flushed == 300
    expected = {f"req-{i}" for i in range(300)}
    for uri, column in ((inference_uri, "databricks_request_id"), (writer.usage.uri, "request_id")):
        counts = id_counts(uri, column)
        assert set(counts) == expected
        assert max(counts.values()) == 1
