"""The durable spool: appends, segments, replay bookkeeping, one owner per folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import InvalidParameterValue, InvalidState
from modelport.tables.spool import Spool

A = b'["usage","system.serving.endpoint_usage","/r/u"]'
B = b'["inference","main.default.x_payload","/r/x"]'


def test_append_seal_read_and_mark(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    assert spool.seal() is None  # nothing to seal
    assert spool.append(A, {"request_id": "1"}) == 1
    assert spool.append(B, {"databricks_request_id": "2"}) == 2
    seg = spool.seal()
    assert seg is not None and seg.records == 2 and seg.tables == {A, B} and not seg.replayed
    assert spool.active_records == 0 and spool.pending() == [seg]
    contents = spool.read(seg)
    assert contents.rows == {A: [{"request_id": "1"}], B: [{"databricks_request_id": "2"}]}
    spool.mark_table_done(seg, A)
    assert spool.read(seg).rows == {B: [{"databricks_request_id": "2"}]}
    spool.mark_flushed(seg)
    assert spool.pending() == [] and not seg.path.exists() and not seg.done_path.exists()
    spool.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK"]  # the empty active segment is gone


def test_an_earlier_runs_segments_come_back_replayed(tmp_path: Path) -> None:
    first = Spool(tmp_path, fsync="always")
    first.open()
    first.append(A, {"request_id": "1"})
    sealed = first.seal()
    assert sealed is not None
    first.mark_table_done(sealed, A)
    first.append(B, {"databricks_request_id": "2"})
    first.close()  # the active segment holds a record: it stays

    second = Spool(tmp_path)
    second.open()
    pending = second.pending()
    assert [s.seq for s in pending] == [sealed.seq, sealed.seq + 1]
    assert all(s.replayed and s.needs_dedup and s.tables is None for s in pending)
    assert pending[0].done == {A}
    assert second.read(pending[0]).rows == {} and pending[0].tables == {A}
    assert second.read(pending[1]).rows == {B: [{"databricks_request_id": "2"}]}
    second.append(A, {"request_id": "3"})
    new = second.seal()
    assert new is not None and new.seq == sealed.seq + 2  # numbering goes on after the old segments
    second.close()


def test_unparsable_lines_are_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="interval")
    spool.open()
    spool.append(A, {"request_id": "1"})
    spool.sync()
    seg = spool.seal()
    assert seg is not None
    with seg.path.open("ab") as fh:
        fh.write(b'{"t":[1],"r":[]}\n\x00\x00\x00\n{"t":["usage"')
    contents = spool.read(seg)
    assert contents.count == 1 and contents.corrupt == 2 and seg.records == 1
    spool.close()


def test_one_owner_per_folder(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    with pytest.raises(InvalidState, match="in use"):
        Spool(tmp_path).open()
    spool.close()
    again = Spool(tmp_path)
    again.open()
    again.close()
    with pytest.raises(InvalidState):
        again.append(A, {})
    with pytest.raises(InvalidParameterValue):
        Spool(tmp_path, fsync="sometimes")  # type: ignore[arg-type]


def test_a_failed_write_starts_a_new_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append(A, {"request_id": "1"})
    with pytest.raises(TypeError):
        spool.append(A, {"request_id": object()})  # not serialisable: nothing written
    spool._broken = True  # as after a short write on a full disk
    spool.append(A, {"request_id": "2"})
    pending = spool.pending()
    assert len(pending) == 1 and pending[0].records == 1
    spool.close()


def test_a_full_disk_keeps_records_in_memory_then_refuses_then_writes_them(tmp_path: Path) -> None:
    from modelport.errors import TemporarilyUnavailable

    spool = Spool(tmp_path, memory_limit=2)
    spool.open()
    spool.append(A, {"request_id": "1"})
    full = tmp_path / f"{2:016d}.seg"
    full.symlink_to("/dev/full")  # the next segment is a file whose every write fails with ENOSPC
    first = spool.seal()
    assert first is not None
    assert spool.append(A, {"request_id": "2"}) == 0  # refused by the disk: kept in memory
    assert spool.append(B, {"databricks_request_id": "3"}) == 0  # queued behind it, in order
    assert spool.in_memory == 2 and spool.appended == 3
    with pytest.raises(TemporarilyUnavailable) as refused:
        spool.append(A, {"request_id": "4"})
    assert refused.value.retry_after
    with pytest.raises(TemporarilyUnavailable):
        spool.check_room()
    assert spool.refused == 2
    # The disk takes writes again (a new segment, a real file): drain writes what memory held.
    assert spool.drain() == 0 and spool.in_memory == 0
    spool.check_room()
    drained = spool.seal()
    assert drained is not None and drained.records == 2
    [broken] = [s for s in spool.pending() if s.path == full]
    assert broken.records == 0  # sealed by the drain; nothing to read (reading /dev/full never ends)
    spool.mark_flushed(broken)
    assert spool.read(drained).rows == {A: [{"request_id": "2"}], B: [{"databricks_request_id": "3"}]}
    spool.close()


def test_no_memory_refuses_at_once(tmp_path: Path) -> None:
    from modelport.errors import TemporarilyUnavailable

    spool = Spool(tmp_path)
    spool.open()
    spool.append(A, {"request_id": "1"})
    (tmp_path / f"{2:016d}.seg").symlink_to("/dev/full")
    spool.seal()
    with pytest.raises(TemporarilyUnavailable):
        spool.append(A, {"request_id": "2"})
    assert spool.refused == 1 and spool.in_memory == 0
    spool.close()
