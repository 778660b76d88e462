"""Owners for registered models and experiments made before registry permissions existed.

On the first start with registry permissions, every registered model and experiment that has
no grant gets a manager (CAN_MANAGE): the principal named by the MLflow ``user_id`` of its
first model version, or of its first version's run, or of the experiment's first run, where
that names an existing user or service principal; else the ``admins`` group. The Default
experiment (id ``0``) is left alone: every user may edit it and admins manage it.

:func:`backfill_owners` is idempotent (an object with any grant is skipped) and records a
``meta`` flag when done, so :func:`backfill_owners_once` runs it once per store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from modelport.clock import now_ms
from modelport.spec.identity import ADMINS_GROUP
from modelport.spec.registry_permissions import DEFAULT_EXPERIMENT_ID, RegistryLevel, RegistryObject
from modelport.store import Database

__all__ = ["DONE_KEY", "backfill_owners", "backfill_owners_once"]

log = logging.getLogger("modelport.registry")

#: The ``meta`` key recording that the backfill ran (its value: when, in ms).
DONE_KEY = "registry_owners_backfilled_ms"
_MANAGE = int(RegistryLevel.CAN_MANAGE)
_PAGE = 1000


def _pages(search: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = search(token)
        yield from page
        token = page.token
        if not token:
            return


def backfill_owners(db: Database, tracking: Any, registry: Any) -> dict[str, int]:
    """Give each ungranted model and experiment an owner. ``tracking`` and ``registry`` are
    MLflow's tracking and model-registry stores. Returns how many of each got one."""
    from mlflow.entities import ViewType

    admins = db.principals.get(ADMINS_GROUP)
    principals: dict[str, int | None] = {}

    def principal_id(user_id: str | None) -> int | None:
        if not user_id:
            return None
        if user_id not in principals:
            found = db.principals.get(user_id)
            principals[user_id] = found.id if found is not None and found.kind != "group" else None
        return principals[user_id]

    def run_user(run_id: str | None) -> str | None:
        if not run_id:
            return None
        try:
            return str(tracking.get_run(run_id).info.user_id or "") or None
        except Exception:  # a run deleted for good: no owner from it
            return None

    def grant(kind: RegistryObject, object_id: str, owner: int | None) -> bool:
        chosen = owner if owner is not None else (admins.id if admins is not None else None)
        return chosen is not None and db.grants.grant_if_absent(kind.value, object_id, chosen, _MANAGE)

    done = {"registered-model": 0, "experiment": 0}
    granted = db.grants.object_ids(RegistryObject.EXPERIMENT.value)
    for exp in _pages(
        lambda token: tracking.search_experiments(view_type=ViewType.ALL, max_results=_PAGE, page_token=token)
    ):
        exp_id = str(exp.experiment_id)
        if exp_id == DEFAULT_EXPERIMENT_ID or exp_id in granted:
            continue
        first = tracking.search_runs(
            [exp_id], "", ViewType.ALL, max_results=20, order_by=["attributes.start_time ASC"]
        )
        owner = next((p for p in (principal_id(r.info.user_id) for r in first) if p is not None), None)
        done["experiment"] += grant(RegistryObject.EXPERIMENT, exp_id, owner)

    granted = db.grants.object_ids(RegistryObject.REGISTERED_MODEL.value)
    first_version: dict[str, Any] = {}
    for mv in _pages(lambda token: registry.search_model_versions(max_results=_PAGE, page_token=token)):
        seen = first_version.get(mv.name)
        if seen is None or int(mv.version) < int(seen.version):
            first_version[mv.name] = mv
    for rm in _pages(lambda token: registry.search_registered_models(max_results=_PAGE, page_token=token)):
        if rm.name in granted:
            continue
        mv = first_version.get(rm.name)
        owner = None
        if mv is not None:
            owner = principal_id(mv.user_id) or principal_id(run_user(mv.run_id))
        done["registered-model"] += grant(RegistryObject.REGISTERED_MODEL, rm.name, owner)
    db.meta_setdefault(DONE_KEY, str(now_ms()))
    return done


def backfill_owners_once(db: Database) -> None:
    """Run :func:`backfill_owners` on the embedded registry unless it ran on this store.
    Blocking: call it in a thread once MLflow has loaded. A failure is logged and the next
    start tries again (meanwhile the models without a grant are open to admins only)."""
    if db.meta_get(DONE_KEY) is not None:
        return
    from mlflow.server import handlers

    try:
        done = backfill_owners(db, handlers._get_tracking_store(), handlers._get_model_registry_store())
    except Exception:
        log.exception("registry permissions: owners of existing models and experiments not recorded")
        return
    log.info(
        "registry permissions: owners recorded for existing objects",
        extra={"models": done["registered-model"], "experiments": done["experiment"]},
    )
