"""Comparison reports over an inference table written here (``control/comparisons.py``): the
pairs of each source, the measures, and the time parameters."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
from deltalake import write_deltalake

from modelport.control.comparisons import Row, parse_time, replay_pairs, shadow_pairs, summarize
from modelport.errors import InvalidParameterValue
from modelport.tables.records import PARTITION_COLUMN, InferenceRecord, to_arrow

T0 = 1_796_600_000_000  # 2026-12-06 (UTC), ms


def record(rid: str, ts: int, served: str, answer: Any, status: int = 200, **extra: Any) -> dict[str, Any]:
    body = orjson.dumps(answer)
    r = InferenceRecord.from_bodies(rid, status, 10 + ts % 7, b'{"x": 1}', body, timestamp_ms=ts, **extra)
    r.served_entity_name = served
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    write_deltalake(str(path), to_arrow("inference", rows), partition_by=[PARTITION_COLUMN], mode="append")
    return str(path)


def label(v: int) -> dict[str, Any]:
    return {"predictions": [v]}


def test_shadow_pairs_in_the_window_both_ways(tmp_path: Path) -> None:
    rows = [
        record("a", T0, "v1", label(1)),
        record("a-s", T0 + 5, "v2", label(1), shadow_of="a"),
        record("b", T0 + 10, "v1", label(0)),
        record("b-s", T0 + 15, "v2", label(1), shadow_of="b"),
        # a canary: the candidate answered live, its copy went to the incumbent
        record("c", T0 + 20, "v2", label(1)),
        record("c-s", T0 + 25, "v1", label(1), shadow_of="c"),
        # a copy to another entity, and a replay: no pair of v2
        record("d", T0 + 30, "v1", label(1)),
        record("d-s", T0 + 35, "v3", label(1), shadow_of="d"),
        record("r", T0 + 40, "v2", label(1), replay_of="a"),
        # outside the window
        record("e", T0 + 100_000, "v1", label(1)),
        record("e-s", T0 + 100_005, "v2", label(1), shadow_of="e"),
    ]
    uri = write(tmp_path / "t", rows)
    pairs = shadow_pairs(uri, "v2", T0, T0 + 1000)
    assert [(a.id, b.id) for a, b in pairs] == [("a", "a-s"), ("b", "b-s"), ("c-s", "c")]
    report = summarize(pairs)
    assert report["pairs"] == 3 and report["compared"] == 3
    assert report["agreement"] == pytest.approx(2 / 3)
    assert report["kind"] == "labels" and report["correlation"] is None
    assert shadow_pairs(str(tmp_path / "none"), "v2", None, None) == []


def test_replay_pairs_newest_replay_of_one_replay(tmp_path: Path) -> None:
    mine, other = {"replay_id": "r1"}, {"replay_id": "r2"}
    rows = [
        record("a", T0, "v1", label(1)),
        record("b", T0 + 1, "v1", label(0)),
        record("a-1", T0 + 10, "v2", label(0), status=503, replay_of="a", request_metadata=mine),
        record("a-2", T0 + 20, "v2", label(1), replay_of="a", request_metadata=mine),  # sent again
        record("b-1", T0 + 30, "v2", label(1), replay_of="b", request_metadata=mine),
        record("b-9", T0 + 40, "v2", label(0), replay_of="b", request_metadata=other),
    ]
    uri = write(tmp_path / "t", rows)
    pairs = replay_pairs(uri, "v2", None, None, "r1")
    assert [(a.id, b.id) for a, b in pairs] == [("a", "a-2"), ("b", "b-1")]
    assert summarize(pairs)["agreement"] == 0.5
    pairs = replay_pairs(uri, "v2", None, None, None)  # every replay: the newest of each row
    assert [(a.id, b.id) for a, b in pairs] == [("a", "a-2"), ("b", "b-9")]
    assert summarize(pairs)["agreement"] == 1.0


def row(rid: str, answer: Any, status: int = 200, latency: int = 10, served: str = "v1") -> Row:
    return Row(rid, 0, status, latency, served, None if answer is None else orjson.dumps(answer).decode())


def test_summarize_numbers_errors_and_latency() -> None:
    pairs = [
        (
            row(str(i), {"predictions": [i / 10]}, latency=i),
            row(f"c{i}", {"predictions": [i / 5]}, latency=2 * i),
        )
        for i in range(1, 10)
    ]
    pairs.append((row("x", {"predictions": [0.5]}, latency=100), row("cx", None, status=500, latency=1)))
    report = summarize(pairs)
    assert report["kind"] == "numbers"
    assert report["pairs"] == 10 and report["compared"] == 9
    assert report["agreement"] == 0.0  # doubled: no value within the tolerance
    assert report["correlation"] == pytest.approx(1.0)
    assert report["live"] == {"requests": 10, "errors": 0, "error_rate": 0.0, "p50_ms": 5.0, "p99_ms": 100.0}
    assert report["candidate_stats"]["errors"] == 1 and report["candidate_stats"]["error_rate"] == 0.1
    assert report["similarity"] is None and report["length"] is None


def chat(text: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


def test_summarize_text_similarity_and_length() -> None:
    pairs = [
        (row("1", chat("the cat sat")), row("c1", chat("the cat sat"))),
        (row("2", chat("a b")), row("c2", chat("b c d e"))),
    ]
    report = summarize(pairs)
    assert report["kind"] == "text" and report["agreement"] == 0.5
    assert report["similarity_method"] == "jaccard"
    assert report["similarity"] == pytest.approx((1 + 1 / 5) / 2)
    assert report["length"] == {"live": pytest.approx(7.0), "candidate": pytest.approx(9.0)}
    embedded = summarize(pairs, embed=lambda texts: [[1.0, 0.0] for _ in texts])
    assert embedded["similarity_method"] == "embedding" and embedded["similarity"] == pytest.approx(1.0)
    assert summarize([])["agreement"] is None and summarize([])["kind"] is None


def test_parse_time() -> None:
    now = T0
    assert parse_time(None, now, "since") is None
    assert parse_time("1h", now, "since") == now - 3_600_000
    assert parse_time("30m", now, "since") == now - 1_800_000
    assert parse_time("1.5d", now, "since") == now - 129_600_000
    assert parse_time(str(T0 - 5), now, "since") == T0 - 5
    assert parse_time(T0 - 5, now, "since") == T0 - 5
    assert parse_time("2026-12-07T09:00:00Z", now, "since") == 1_796_634_000_000
    assert parse_time("2026-12-07T10:00:00+01:00", now, "since") == 1_796_634_000_000
    assert parse_time("2026-12-07 09:00", now, "since") == 1_796_634_000_000  # UTC when it says none
    for bad in ("yesterday", "1 fortnight", "-1h", True):
        with pytest.raises(InvalidParameterValue, match="'until'"):
            parse_time(bad, now, "until")
