"""The content digest of a model folder (``entities/model_digest.py``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelport.entities.model_digest import digest_of


def _model(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "data" / "model.pkl").write_bytes(b"\x80\x04pickle")
    return folder


def test_digest_is_sha256_over_sorted_paths_and_file_digests(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    expected = hashlib.sha256()
    for rel, content in [("MLmodel", b"flavors: {}\n"), ("data/model.pkl", b"\x80\x04pickle")]:
        expected.update(rel.encode() + b"\0" + hashlib.sha256(content).hexdigest().encode() + b"\n")
    assert digest_of(folder) == f"sha256:{expected.hexdigest()}"


def test_same_files_elsewhere_give_the_same_digest(tmp_path: Path) -> None:
    first, second = _model(tmp_path / "a"), _model(tmp_path / "b")
    os.utime(second / "MLmodel", (0, 0))
    (second / "empty-folder").mkdir()
    assert digest_of(first) == digest_of(second)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: (f / "data" / "model.pkl").write_bytes(b"\x80\x04evil"),
        lambda f: (f / "data" / "extra.py").write_text("import os\n"),
        lambda f: (f / "data" / "model.pkl").unlink(),
        lambda f: (f / "data" / "model.pkl").rename(f / "data" / "model2.pkl"),
        lambda f: (f / "data" / "link").symlink_to("/etc/passwd"),
    ],
    ids=["changed", "added", "removed", "renamed", "link-added"],
)
def test_any_change_to_the_files_changes_the_digest(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    folder = _model(tmp_path / "m")
    before = digest_of(folder)
    change(folder)
    assert digest_of(folder) != before


def test_a_link_is_recorded_by_its_target_not_followed(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("a")
    (folder / "linked").symlink_to(outside)
    before = digest_of(folder)
    (outside / "a.txt").write_text("b")
    assert digest_of(folder) == before
    (folder / "linked").unlink()
    (folder / "linked").symlink_to(tmp_path)
    assert digest_of(folder) != before


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No model folder"):
        digest_of(tmp_path / "nowhere")
