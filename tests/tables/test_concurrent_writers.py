"""Two server processes appending to one Delta table, each through its own spool, corrupt nothing."""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable

from tests.support.tables import id_counts, recorder


def test_two_processes_append_to_one_table(tmp_path: Path) -> None:
    root = str(tmp_path / "tables")
    procs = [
        recorder(
            root,
            str(tmp_path / f"spool{n}"),
            "--count",
            "400",
            "--prefix",
            f"p{n}",
            "--usage-only",
            "--flush-every",
            "20",
        )
        for n in (1, 2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.rstrip().endswith("DONE")
    uri = f"{root}/system/serving/endpoint_usage"
    counts = id_counts(uri, "request_id")
    assert counts.total() == 800
    assert set(counts) == {f"p{n}-{i}" for n in (1, 2) for i in range(400)}
    history = DeltaTable(uri).history()
    assert len(history) == 40  # 20 commits from each, one after another
    assert sorted(h["version"] for h in history) == list(range(len(history)))
