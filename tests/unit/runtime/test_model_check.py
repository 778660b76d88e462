"""A replica's model files against the digest recorded at registration (``runtime/model_check.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.entities.model_digest import digest_of
from modelport.errors import InvalidState
from modelport.runtime.model_check import ModelCheck


class Digests:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], tuple[str, str]] = {}

    def get(self, model_name: str, version: int) -> tuple[str, str] | None:
        return self.rows.get((model_name, version))

    def record(self, model_name: str, version: int, digest: str, source: str, now_ms: int) -> bool:
        return self.rows.setdefault((model_name, version), (digest, source)) == (digest, source)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "model.pkl").write_bytes(b"pickle")
    return folder


def test_files_that_match_the_recorded_digest_load(tmp_path: Path) -> None:
    folder, digests, log = _folder(tmp_path), Digests(), Lines()
    digests.rows[("fraud", 3)] = (digest_of(folder), "registration")
    ModelCheck(digests, embedded=True).verify("fraud", "3", folder, log)
    assert log.lines[-1].startswith("Model files match the digest recorded at registration")


def test_changed_files_fail_with_both_digests(tmp_path: Path) -> None:
    folder, digests, log = _folder(tmp_path), Digests(), Lines()
    recorded = digest_of(folder)
    digests.rows[("fraud", 3)] = (recorded, "registration")
    (folder / "model.pkl").write_bytes(b"evil")
    expected = (
        f"model 'fraud' version 3: artifacts changed since registration "
        f"(digest {digest_of(folder)} != recorded {recorded}); refusing to load"
    )
    with pytest.raises(InvalidState) as caught:
        ModelCheck(digests, embedded=True).verify("fraud", "3", folder, log)
    assert caught.value.message == expected
    assert log.lines[-1] == f"FAILED: {expected}"


def test_no_recorded_digest_is_recorded_at_first_load_and_held_to_after(tmp_path: Path) -> None:
    folder, digests, log = _folder(tmp_path), Digests(), Lines()
    check = ModelCheck(digests, embedded=True, clock=lambda: 12.5)
    check.verify("fraud", "1", folder, log)
    assert digests.rows[("fraud", 1)] == (digest_of(folder), "first-load")
    (folder / "extra.py").write_text("import os\n")
    with pytest.raises(InvalidState, match="artifacts changed since registration"):
        check.verify("fraud", "1", folder, log)


def test_an_external_registry_is_not_checked(tmp_path: Path) -> None:
    folder, digests = _folder(tmp_path), Digests()
    digests.rows[("fraud", 1)] = ("sha256:other", "registration")
    ModelCheck(digests, embedded=False).verify("fraud", "1", folder, Lines())
    assert digests.rows == {("fraud", 1): ("sha256:other", "registration")}
