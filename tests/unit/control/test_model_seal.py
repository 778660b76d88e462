"""Which paths a sealed model version covers (``control/model_seal.py``)."""

from __future__ import annotations

from pathlib import Path

from modelport.control.model_seal import ModelSeal, SealedVersion


class Registry:
    """The two look-ups the seal makes, over a fixed table of versions."""

    def __init__(self, root: Path, versions: dict[tuple[str, str], str]) -> None:
        self.root, self.versions = root, versions

    def all_versions(self) -> list[tuple[str, str, str]]:
        return [(n, v, "READY") for n, v in self.versions]

    def storage_uri(self, name: str, version: str) -> str:
        return f"mlflow-artifacts:/{self.versions[(name, version)]}"

    def local_path(self, uri: str) -> Path:
        return self.root / uri.removeprefix("mlflow-artifacts:/")


class Digests:
    def __init__(self) -> None:
        self.renamed: list[tuple[str, str]] = []

    def rename(self, old: str, new: str) -> None:
        self.renamed.append((old, new))


class Db:
    def __init__(self) -> None:
        self.digests = Digests()


def _seal(tmp_path: Path, db: Db | None = None) -> ModelSeal:
    registry = Registry(
        tmp_path, {("fraud", "3"): "1/models/m-abc/artifacts", ("iris", "1"): "0/run1/artifacts/model"}
    )
    seal = ModelSeal(registry, db=db or Db(), artifacts_root=tmp_path)  # type: ignore[arg-type]
    assert seal.load() == 2
    return seal


def test_a_sealed_folder_covers_itself_and_everything_under_it(tmp_path: Path) -> None:
    seal = _seal(tmp_path)
    fraud = SealedVersion("fraud", 3)
    assert seal.covering(seal.artifact_target("1/models/m-abc/artifacts")) == fraud
    assert seal.covering(seal.artifact_target("1/models/m-abc/artifacts/data/model.pkl")) == fraud
    assert seal.covering(seal.artifact_target("1/models/m-abc/artifacts/./x/../MLmodel")) == fraud
    assert seal.covering(seal.artifact_target("/1//models/m-abc/artifacts/MLmodel")) == fraud


def test_neighbours_and_parents_are_not_covered_but_parents_hold_it(tmp_path: Path) -> None:
    seal = _seal(tmp_path)
    assert seal.covering(seal.artifact_target("1/models/m-abc/artifacts2/MLmodel")) is None
    assert seal.covering(seal.artifact_target("0/run1/artifacts/notes.txt")) is None
    assert seal.covering(seal.artifact_target("1/models/m-abc")) is None
    assert seal.inside(seal.artifact_target("1/models/m-abc")) == SealedVersion("fraud", 3)
    assert seal.inside(seal.artifact_target("0")) == SealedVersion("iris", 1)
    assert seal.inside(seal.artifact_target("1/models/m-abd")) is None


def test_a_renamed_model_keeps_its_folders_sealed_under_the_new_name(tmp_path: Path) -> None:
    db = Db()
    seal = _seal(tmp_path, db)
    seal.rename("fraud", "fraud-v2")
    assert seal.covering(seal.artifact_target("1/models/m-abc/artifacts/MLmodel")) == SealedVersion(
        "fraud-v2", 3
    )
    assert db.digests.renamed == [("fraud", "fraud-v2")]
