"""Feature specs as files under the tables root: exclusive creation, reads, and table discovery."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modelport.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from modelport.tables.feature_spec_store import SPECS_FOLDER, FeatureSpecStore, StoredSpec, spec_name
from modelport.tables.query import discover_tables

DOC = {"input_columns": [{"k": {"source": "training_data"}}], "input_tables": []}


def stored(name: str = "main.shop.spec", owner: str = "alice") -> StoredSpec:
    return StoredSpec(name, owner, 7, DOC)


def test_a_spec_reads_back_and_is_listed(tmp_path: Path) -> None:
    store = FeatureSpecStore(str(tmp_path))
    store.create(stored())
    store.create(stored("main.shop.another", "bob"))
    assert store.get("main.shop.spec") == stored()
    assert [s.name for s in store.list()] == ["main.shop.another", "main.shop.spec"]
    assert (tmp_path / SPECS_FOLDER / "main.shop.spec.json").is_file()
    assert [p.name for p in (tmp_path / SPECS_FOLDER).iterdir() if p.name.startswith(".")] == []


def test_creation_is_exclusive_even_between_threads(tmp_path: Path) -> None:
    store = FeatureSpecStore(str(tmp_path))
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(owner: str) -> None:
        try:
            FeatureSpecStore(str(tmp_path)).create(stored(owner=owner))
            result = owner
        except ResourceAlreadyExists:
            result = "taken"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(f"user{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "taken"]
    assert len(winners) == 1 and outcomes.count("taken") == 7
    assert store.get("main.shop.spec").owner == winners[0]


def test_missing_and_deleted_specs_do_not_exist(tmp_path: Path) -> None:
    store = FeatureSpecStore(str(tmp_path))
    assert store.list() == []
    with pytest.raises(ResourceDoesNotExist):
        store.get("main.shop.spec")
    store.create(stored())
    store.delete("main.shop.spec")
    with pytest.raises(ResourceDoesNotExist):
        store.delete("main.shop.spec")
    assert store.list() == []


def test_a_damaged_file_is_left_out_of_the_listing(tmp_path: Path) -> None:
    store = FeatureSpecStore(str(tmp_path))
    store.create(stored())
    (tmp_path / SPECS_FOLDER / "main.shop.broken.json").write_text("{not json")
    assert [s.name for s in store.list()] == ["main.shop.spec"]
    with pytest.raises(ResourceDoesNotExist, match="damaged"):
        store.get("main.shop.broken")


def test_the_folder_is_never_taken_for_a_catalog(tmp_path: Path) -> None:
    FeatureSpecStore(str(tmp_path)).create(stored())
    (tmp_path / "main" / "shop" / "t" / "_delta_log").mkdir(parents=True)
    assert list(discover_tables(str(tmp_path))) == ["main.shop.t"]
    with pytest.raises(InvalidParameterValue):  # not a name part: no table can be made there
        spec_name(f"{SPECS_FOLDER}.shop.t")


def test_names_are_three_checked_lowercase_parts() -> None:
    assert spec_name("Main.Shop.Spec") == "main.shop.spec"
    for bad in ("shop.spec", "main.shop.spec/../x", "", None):
        with pytest.raises(InvalidParameterValue):
            spec_name(bad)
