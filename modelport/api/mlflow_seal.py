"""The seal in front of MLflow's app: registered versions' files cannot be written through it.

Sits behind the mount's guard (``api/mlflow_mount.py``) and in front of MLflow's WSGI app.

- **Refused** with 403 ``PERMISSION_DENIED`` when the target lies in a sealed folder
  (``control/model_seal.py``): ``PUT``/``DELETE`` on ``…/mlflow-artifacts/artifacts/<path>``
  (a ``DELETE`` also when a sealed folder lies under ``<path>``), the multipart routes
  ``…/mlflow-artifacts/mpu/{create,complete,abort}/<path>`` on the same terms, and the UI's
  ``/ajax-api/2.0/mlflow/upload-artifact`` into a run's sealed sub-folder. MLflow's
  ``demo/delete`` (a hard delete of an experiment's files) is refused while any version is
  sealed. The check reads the in-memory set and the path only: upload bodies stream through
  unbuffered (``upload-artifact``, capped at 10 MB by MLflow, costs one run look-up).
- **Watched**: ``model-versions/create`` (its answer is held until a READY version's folder is
  sealed, then its digest is recorded in a thread), ``model-versions/delete``,
  ``registered-models/delete`` and ``registered-models/rename`` (applied once MLflow answers
  200). These bodies are small JSON documents.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.api.errors import error_response
from modelport.control.model_seal import ModelSeal, SealedVersion
from modelport.errors import ModelportError, PermissionDenied
from modelport.store.database import Database

__all__ = ["MlflowSeal", "sealed_app"]

log = logging.getLogger("modelport.registry")

_ROOTS = ("/api/2.0", "/ajax-api/2.0")
_ARTIFACTS = tuple(f"{r}/mlflow-artifacts/artifacts/" for r in _ROOTS)
_MULTIPART = tuple(
    f"{r}/mlflow-artifacts/mpu/{step}/" for r in _ROOTS for step in ("create", "complete", "abort")
)
_UPLOAD = "/ajax-api/2.0/mlflow/upload-artifact"
_DEMO_DELETE = "/ajax-api/3.0/mlflow/demo/delete"
_CREATE = {f"{r}/mlflow/model-versions/create" for r in _ROOTS}
_VERSION_DELETE = {f"{r}/mlflow/model-versions/delete" for r in _ROOTS}
_MODEL_DELETE = {f"{r}/mlflow/registered-models/delete" for r in _ROOTS}
_RENAME = {f"{r}/mlflow/registered-models/rename" for r in _ROOTS}
_WRITES = frozenset({"PUT", "POST", "DELETE", "PATCH"})
_MAX_WATCHED_BODY = 1 << 20


def _refusal(sealed: SealedVersion, what: str) -> PermissionDenied:
    return PermissionDenied(
        f"{sealed.describe()} is registered: its files are immutable and cannot be {what}. "
        "Log a new model and register it as a new version instead."
    )


def _relative(path: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return ""


def _collect(messages: list[Message]) -> tuple[int, bytes]:
    status = next((int(m["status"]) for m in messages if m["type"] == "http.response.start"), 500)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body


class MlflowSeal:
    """ASGI wrapper: refuses writes into sealed folders and keeps the seal and digests current."""

    def __init__(self, app: ASGIApp, seal: ModelSeal) -> None:
        self.app = app
        self.seal = seal
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Run a blocking seal method in a thread, logging (not raising) its failure."""

        async def run() -> None:
            try:
                await asyncio.to_thread(fn, *args, **kwargs)
            except Exception:
                log.exception("model seal bookkeeping failed", extra={"task": getattr(fn, "__name__", "")})

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            await self._check(scope, path)
        except ModelportError as exc:
            log.warning("write to a registered model version refused", extra={"path": path})
            await error_response(exc)(scope, receive, send)
            return
        if path in _CREATE:
            await self._created(scope, receive, send)
        elif path in _VERSION_DELETE or path in _MODEL_DELETE or path in _RENAME:
            await self._changed(scope, receive, send, path)
        else:
            await self.app(scope, receive, send)

    async def _check(self, scope: Scope, path: str) -> None:
        method = scope["method"]
        seal = self.seal
        if path.startswith(_ARTIFACTS) and method in ("PUT", "DELETE"):
            target = seal.artifact_target(_relative(path, _ARTIFACTS))
            hit = seal.covering(target) or (seal.inside(target) if method == "DELETE" else None)
            if hit is not None:
                raise _refusal(hit, "overwritten" if method == "PUT" else "deleted")
        elif path.startswith(_MULTIPART):
            target = seal.artifact_target(_relative(path, _MULTIPART))
            hit = seal.covering(target) or seal.inside(target)
            if hit is not None:
                raise _refusal(hit, "overwritten")
        elif path == _UPLOAD:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            run_id, file = query.get("run_uuid", [""])[0], query.get("path", [""])[0]
            if run_id and file and seal.sealed_count():
                hit = await asyncio.to_thread(self._upload_target, run_id, file)
                if hit is not None:
                    raise _refusal(hit, "overwritten")
        elif path == _DEMO_DELETE and seal.sealed_count():
            raise PermissionDenied(
                "MLflow's demo data cannot be hard-deleted on this server while registered model "
                "versions exist: their files are immutable."
            )

    def _upload_target(self, run_id: str, file: str) -> SealedVersion | None:
        try:
            uri = self.seal.registry.run_artifact_uri(run_id, posixpath.normpath(file))
        except Exception:  # no such run: MLflow answers it
            return None
        local = self.seal.registry.local_path(uri)
        return None if local is None else self.seal.covering(str(local))

    async def _created(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold MLflow's answer until a READY version is sealed, then record its digest."""
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        status, body = _collect(held)
        version = self._version_of(status, body)
        folder: Path | None = None
        if version is not None:
            try:
                folder = await asyncio.to_thread(self.seal.seal, *version)
            except Exception:  # the replica check still compares at deployment
                log.exception("sealing a new model version failed", extra={"model": version[0]})
        for message in held:
            await send(message)
        if version is not None and folder is not None:
            self.spawn(self.seal.record, *version, folder, "registration", replace=True)

    @staticmethod
    def _version_of(status: int, body: bytes) -> tuple[str, str] | None:
        if status != 200:
            return None
        try:
            found = json.loads(body).get("model_version") or {}
        except (ValueError, AttributeError):
            return None
        if found.get("status", "READY") != "READY" or not found.get("name") or not found.get("version"):
            return None
        return str(found["name"]), str(found["version"])

    async def _changed(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Pass a delete or rename through; once MLflow answers 200, update the seal and digests."""
        chunks: list[bytes] = []
        size = 0
        status = 0

        async def tee() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request" and size < _MAX_WATCHED_BODY:
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
            return message

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, tee, watch)
        if status != 200:
            return
        fields = self._fields(scope, b"".join(chunks))
        name = fields.get("name")
        if not name:
            return
        if path in _RENAME and fields.get("new_name"):
            self.spawn(self.seal.rename, name, fields["new_name"])
        elif path in _VERSION_DELETE and str(fields.get("version", "")).isdecimal():
            self.spawn(self.seal.forget, name, fields["version"])
        elif path in _MODEL_DELETE:
            self.spawn(self.seal.forget, name)

    @staticmethod
    def _fields(scope: Scope, body: bytes) -> dict[str, str]:
        fields = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        try:
            parsed = json.loads(body) if body.strip() else {}
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            fields.update({k: str(v) for k, v in parsed.items() if isinstance(v, str | int)})
        return fields


async def sealed_app(
    wsgi: ASGIApp | None, registry: Any, db: Database, artifacts_root: Path
) -> ASGIApp | None:
    """Wrap the embedded registry's app in the seal, sealed folders loaded before it answers;
    each READY version without a digest gets one in a thread (the upgrade backfill)."""
    if wsgi is None:
        return None
    seal = ModelSeal(registry, db, artifacts_root)
    try:
        sealed = await asyncio.to_thread(seal.load)
        log.info("registered model versions sealed", extra={"versions": sealed})
    except Exception:  # the registry still serves; replicas still check digests
        log.exception("registered model versions could not be sealed")
    app = MlflowSeal(wsgi, seal)
    app.spawn(seal.backfill)
    return app
