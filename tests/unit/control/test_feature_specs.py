"""The server's checks of a feature spec: its features against their tables, function definitions
from the registry only, and who may create, read and serve it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from modelport.control.feature_specs import FeatureSpecService
from modelport.control.table_acl import OBJECT_TYPE, TableListings
from modelport.errors import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist
from modelport.spec.identity import Caller
from modelport.spec.table_privileges import TablePrivilege
from modelport.store import Database, open_database
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_spec import FeatureColumn, FeatureSpec, FunctionColumn, SourceColumn, TableInfo
from modelport.tables.features import FeatureTables
from tests.support.control import ADMIN, alice

TABLE = "main.shop.customers"
DOUBLE = FunctionDef(
    "main.shop.double_it", (("x", "double"),), "double", "def f(x):\n    return 2 * x\n", "f"
)


def spec(*extra: Any, spend_type: str = "double", keys: tuple[str, ...] = ("customer_id",)) -> FeatureSpec:
    return FeatureSpec(
        (
            SourceColumn("customer_id", "bigint"),
            FeatureColumn("spend", TABLE, "spend", keys[:1], data_type=spend_type),
            *extra,
        ),
        (TableInfo(TABLE),),
        tuple(DOUBLE for _ in extra[:1]),
    )


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    database.principals.create("admin", "user", display_name=None, is_admin=True, now_ms=1)
    schema = pa.schema([("customer_id", pa.int64()), ("spend", pa.float64())])
    FeatureTables(str(tmp_path / "tables")).create(TABLE, ["customer_id"], schema)
    return database


def service(
    db: Database, tmp_path: Path, functions: dict[str, FunctionDef] | None = None
) -> FeatureSpecService:
    def resolve(name: str) -> FunctionDef:
        if functions is None or name not in functions:
            raise ResourceDoesNotExist(f"Feature function '{name}' does not exist.")
        return functions[name]

    return FeatureSpecService(
        db,
        str(tmp_path / "tables"),
        functions=resolve if functions is not None else None,
        listings=TableListings(0),
    )


def create(
    svc: FeatureSpecService, doc: dict[str, Any], caller: Caller = ADMIN, name: str = "main.shop.spec"
) -> Any:
    return svc.create(caller, {"name": name, "feature_spec": doc})


def test_a_spec_is_stored_with_its_owner_inputs_and_outputs(db: Database, tmp_path: Path) -> None:
    made = create(service(db, tmp_path), spec().to_dict())
    assert (made["name"], made["owner"], made["tables"]) == ("main.shop.spec", "admin", [TABLE])
    assert (made["inputs"], made["outputs"]) == (["customer_id"], ["customer_id", "spend"])
    assert FeatureSpec.from_dict(made["feature_spec"]) == spec()


def test_function_definitions_are_the_registered_ones_never_the_documents(
    db: Database, tmp_path: Path
) -> None:
    doubled = FunctionColumn("doubled", DOUBLE.name, (("x", "spend"),), "double")
    doc = spec(doubled).to_dict()
    forged = "import os\ndef f(x):\n    os.system('echo owned')\n    return x\n"
    doc["input_functions"][0][DOUBLE.name]["source"] = forged
    with pytest.raises(InvalidParameterValue, match="does not run"):
        create(service(db, tmp_path), doc)
    with pytest.raises(ResourceDoesNotExist, match="double_it"):
        create(service(db, tmp_path, functions={}), doc)
    made = create(service(db, tmp_path, functions={DOUBLE.name: DOUBLE}), doc)
    stored = FeatureSpec.from_dict(made["feature_spec"])
    assert stored.function(DOUBLE.name).source == DOUBLE.source
    assert made["functions"] == [DOUBLE.name]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (spec(spend_type="bigint").to_dict(), "'spend' of table 'main.shop.customers' is double"),
        (
            FeatureSpec(
                (SourceColumn("customer_id"), FeatureColumn("x", TABLE, "nope", ("customer_id",))),
                (TableInfo(TABLE),),
            ).to_dict(),
            "has no feature 'nope'",
        ),
        (
            FeatureSpec(
                (
                    SourceColumn("customer_id"),
                    SourceColumn("other"),
                    FeatureColumn("spend", TABLE, "spend", ("customer_id", "other")),
                ),
                (TableInfo(TABLE),),
            ).to_dict(),
            "has primary keys",
        ),
        (
            FeatureSpec(
                (SourceColumn("k"), FeatureColumn("x", "main.shop.gone", "x", ("k",))),
                (TableInfo("main.shop.gone"),),
            ).to_dict(),
            "main.shop.gone",
        ),
        ({"input_columns": "x"}, "input_columns must be a list"),
    ],
)
def test_features_are_checked_against_their_tables_as_they_are_now(
    db: Database, tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        create(service(db, tmp_path), doc)


def test_select_on_every_table_is_needed_to_create_read_and_serve(db: Database, tmp_path: Path) -> None:
    svc = service(db, tmp_path)
    user = alice(db)
    create(svc, spec().to_dict())
    with pytest.raises(PermissionDenied, match=f"SELECT on feature table\\(s\\) {TABLE}"):
        create(svc, spec().to_dict(), caller=user, name="main.shop.alices")
    with pytest.raises(PermissionDenied):
        svc.get(user, "main.shop.spec")
    assert svc.list(user) == []
    # An unknown spec answers non-admins as one they may not read, admins with a 404.
    with pytest.raises(PermissionDenied):
        svc.get(user, "main.shop.nothing")
    with pytest.raises(ResourceDoesNotExist):
        svc.get(ADMIN, "main.shop.nothing")
    assert svc.for_endpoint(user, "main.shop.nothing", named=False) is None
    with pytest.raises(PermissionDenied):
        svc.for_endpoint(user, "main.shop.nothing", named=True)

    db.grants.write(OBJECT_TYPE, TABLE, {user.id: int(TablePrivilege.SELECT)}, replace=False)
    assert [s["name"] for s in svc.list(user)] == ["main.shop.spec"]
    assert svc.for_endpoint(user, "main.shop.spec", named=True) == spec().to_dict()
    with pytest.raises(PermissionDenied, match="only its owner"):
        svc.delete(user, "main.shop.spec")
    create(svc, spec().to_dict(), caller=user, name="main.shop.alices")
    # The owner still reads a spec after losing SELECT, but can no longer serve it.
    db.grants.write(OBJECT_TYPE, TABLE, {user.id: 0}, replace=False)
    assert svc.get(user, "main.shop.alices")["owner"] == "alice"
    with pytest.raises(PermissionDenied, match=TABLE):
        svc.for_endpoint(user, "main.shop.alices", named=True)
    svc.delete(user, "main.shop.alices")
    assert [s["name"] for s in svc.list(ADMIN)] == ["main.shop.spec"]


def test_names_in_the_system_catalog_are_refused(db: Database, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterValue, match="catalog 'system'"):
        create(service(db, tmp_path), spec().to_dict(), name="system.shop.spec")
