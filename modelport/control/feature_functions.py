"""Feature functions: who may register, read and delete them.

A feature function is Python source that modelport's own processes run (the replicas of models
logged with it, the gateway's feature-spec endpoints; training sets run it on the client), so:

- creating and deleting one needs an admin: registering code is running code as modelport;
- reading a definition (get, list) is open to any authenticated principal, like reading a
  Unity Catalog function's definition with ``EXECUTE``: the definitions hold no data.

Definitions live under the tables root (:mod:`modelport.tables.function_store`). A model or a
feature spec that uses a function carries a copy of its definition, so deleting or replacing a
function never changes what an existing model computes.

Blocking (file I/O): call these methods from a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelport.clock import now_ms
from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.spec.identity import Caller
from modelport.tables.feature_functions import FunctionDef, function_name
from modelport.tables.function_store import FunctionStore, StoredFunction

__all__ = ["FeatureFunctionService"]

#: Catalog of modelport's own tables: no feature function goes there.
RESERVED_CATALOG = "system"


class FeatureFunctionService:
    """The feature functions under one tables root, with their privileges."""

    def __init__(self, root: str) -> None:
        self.store = FunctionStore(root)

    @staticmethod
    def _require_admin(caller: Caller, action: str) -> None:
        if not caller.is_admin:
            raise PermissionDenied(
                f"'{caller.name}' may not {action}: feature functions run code in modelport's "
                "processes, so only admins may register or delete them."
            )

    def create(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Register ``FunctionDef.to_dict()``'s form (admins only). The source is parsed and
        checked, not run."""
        self._require_admin(caller, "create feature functions")
        if not isinstance(body, Mapping):
            raise InvalidParameterValue("The body must be a feature function object.")
        definition = FunctionDef.from_dict(body)
        if definition.name.split(".", 1)[0] == RESERVED_CATALOG:
            raise InvalidParameterValue(
                f"Cannot create feature function '{definition.name}': the catalog '{RESERVED_CATALOG}' "
                "holds modelport's own tables."
            )
        stored = StoredFunction(definition, caller.name, now_ms())
        self.store.create(stored)
        return stored.to_json()

    def get(self, caller: Caller, full_name: Any) -> dict[str, Any]:
        return self.store.get(function_name(full_name)).to_json()

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.store.list()]

    def delete(self, caller: Caller, full_name: Any) -> None:
        """Remove a function (admins only); models and specs that copied it keep their copy."""
        self._require_admin(caller, "delete feature functions")
        self.store.delete(function_name(full_name))

    def definition(self, full_name: str) -> FunctionDef:
        """The registered definition of ``full_name`` (404 when there is none): what a feature
        spec created on the server copies in."""
        return self.store.get(function_name(full_name)).definition
