"""The pure parts of ``modelport migrate``: values from SQLite as PostgreSQL takes them, and the
rewriting of locations that name the old artifacts folder."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Date, LargeBinary, String, Text

from modelport.config import Settings
from modelport.control.migration import _coerce, _prefix_rewriter, migrate
from modelport.errors import InvalidParameterValue


def test_json_keeps_sql_null_and_json_null_apart() -> None:
    assert _coerce(None, JSON()) is None
    assert _coerce("null", JSON()) is JSON.NULL
    assert _coerce('{"a": [1, null]}', JSON()) == {"a": [1, None]}


def test_sqlite_integers_and_text_become_booleans_dates_and_strings() -> None:
    assert _coerce(1, Boolean()) is True
    assert _coerce(0, Boolean()) is False
    assert _coerce("2026-12-06", Date()) == datetime.date(2026, 12, 6)
    assert _coerce(42, String(64)) == "42"
    assert _coerce(b"abc", Text()) == "abc"
    assert _coerce("abc", LargeBinary()) == b"abc"
    assert _coerce(7, BigInteger()) == 7


def test_only_locations_in_the_old_folder_are_rewritten() -> None:
    rewrite = _prefix_rewriter(Path("/data/artifacts"), Path("/shared/artifacts"))
    assert rewrite("/data/artifacts/1/abc/artifacts") == "/shared/artifacts/1/abc/artifacts"
    assert rewrite("file:///data/artifacts/1") == "file:///shared/artifacts/1"
    assert rewrite("file:/data/artifacts") == "file:/shared/artifacts"
    assert rewrite("/data/artifacts-old/1") == "/data/artifacts-old/1"
    assert rewrite("mlflow-artifacts:/1/abc/artifacts") == "mlflow-artifacts:/1/abc/artifacts"
    assert rewrite("models:/m-123") == "models:/m-123"


def test_a_target_that_is_not_postgresql_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterValue, match="--to must be a PostgreSQL URL"):
        migrate(Settings(data_dir=str(tmp_path)), "sqlite:///elsewhere.db", report=lambda _: None)


def test_an_artifacts_root_inside_the_old_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "modelport.db").touch()
    inside = str(tmp_path / "artifacts" / "shared")
    with pytest.raises(InvalidParameterValue, match="must be neither inside"):
        migrate(Settings(data_dir=str(tmp_path)), "postgresql://db/mp", inside, report=lambda _: None)
    assert not (tmp_path / "spool").exists()  # refused before anything was touched
