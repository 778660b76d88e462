"""Where monitors and their refreshes are kept: JSON files under the tables root, beside the
tables they watch and the metrics tables they write::

    <root>/quality-monitors/<catalog>.<schema>.<table>/monitor.json       the definition
    <root>/quality-monitors/<catalog>.<schema>.<table>/state.json         what the refreshes left
    <root>/quality-monitors/<catalog>.<schema>.<table>/refreshes/<id>.json
    <root>/quality-monitors/<catalog>.<schema>.<table>/refreshes/<id>.cancel

``quality-monitors`` is not a valid name part (it holds a dash), so table discovery never takes
it for a catalog (as ``feature-specs``, :mod:`modelport.tables.feature_spec_store`). Every server
sharing the tables root sees the same monitors, as it sees the same tables, and the leader that
refreshes them may be any of them; nothing is kept in the metadata store, so no migration.

One writer per file, so no write overwrites another's: ``monitor.json`` is written by the API
(create, update), ``state.json`` by the refresh runner (the leader) only; a refresh's file is
created by whoever queues it (the API, or the runner for a scheduled one) and then written by
the runner only. A cancel request is a marker file beside it, which the runner reads. A reader
sees a whole file or none (written aside, then renamed into place; an object-store PUT is
atomic). Refresh ids count up from 1 per monitor; two servers queueing at once on a local root
get two ids (the file is created exclusively).

Blocking (file I/O): call it from a thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import orjson
import pyarrow.fs as pafs

from modelport.errors import ResourceAlreadyExists, ResourceDoesNotExist
from modelport.tables.names import is_uri

__all__ = ["MONITORS_FOLDER", "MonitorStore"]

#: The folder of the tables root that holds the monitors (not a valid name part: never a catalog).
MONITORS_FOLDER = "quality-monitors"


class MonitorStore:
    """The monitors under one tables root (a local folder or a URI pyarrow reads)."""

    def __init__(self, root: str) -> None:
        if is_uri(root):
            self._fs, base = pafs.FileSystem.from_uri(root)
            self._local = False
        else:
            self._fs, base = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
            self._local = True
        self.folder = f"{base.rstrip('/')}/{MONITORS_FOLDER}"

    # ---- files ---------------------------------------------------------------------------------
    def _dir(self, table: str) -> str:
        return f"{self.folder}/{table}"

    def _read(self, path: str) -> Any | None:
        try:
            with self._fs.open_input_stream(path) as stream:
                raw = stream.read()
        except (FileNotFoundError, OSError):
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None

    def _write(self, path: str, doc: Any) -> None:
        body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        folder = path.rsplit("/", 1)[0]
        if self._local:
            os.makedirs(folder, exist_ok=True)
            aside = f"{folder}/.{secrets.token_hex(6)}.tmp"
            with open(aside, "wb") as out:
                out.write(body)
            os.replace(aside, path)
            return
        self._fs.create_dir(folder, recursive=True)
        with self._fs.open_output_stream(path) as out:
            out.write(body)

    def _create(self, path: str, doc: Any) -> bool:
        """Write a new file; False when one is there (exclusive on a local root)."""
        body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        folder = path.rsplit("/", 1)[0]
        if self._local:
            os.makedirs(folder, exist_ok=True)
            aside = f"{folder}/.{secrets.token_hex(6)}.tmp"
            with open(aside, "wb") as out:
                out.write(body)
            try:
                os.link(aside, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(aside)
            return True
        if self._fs.get_file_info(path).type != pafs.FileType.NotFound:
            return False
        self._write(path, doc)
        return True

    def _exists(self, path: str) -> bool:
        return bool(self._fs.get_file_info(path).type != pafs.FileType.NotFound)

    def _files(self, folder: str) -> list[str]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [
            i.base_name for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")
        ]

    # ---- monitors ------------------------------------------------------------------------------
    def create(self, table: str, doc: dict[str, Any]) -> None:
        """Store a new monitor of ``table``; :class:`ResourceAlreadyExists` when it has one."""
        if not self._create(f"{self._dir(table)}/monitor.json", doc):
            raise ResourceAlreadyExists(f"Monitor for table '{table}' already exists.")

    def get(self, table: str) -> dict[str, Any]:
        """The monitor of ``table``; :class:`ResourceDoesNotExist` when it has none."""
        doc = self._read(f"{self._dir(table)}/monitor.json")
        if not isinstance(doc, dict):
            raise ResourceDoesNotExist(f"Monitor for table '{table}' does not exist.")
        return doc

    def replace(self, table: str, doc: dict[str, Any]) -> None:
        self._write(f"{self._dir(table)}/monitor.json", doc)

    def delete(self, table: str) -> None:
        """Remove the monitor of ``table`` and its refreshes (the metrics tables stay)."""
        self.get(table)
        with contextlib.suppress(FileNotFoundError):
            self._fs.delete_dir(self._dir(table))

    def tables(self) -> list[str]:
        """The tables that have a monitor, sorted."""
        selector = pafs.FileSelector(self.folder, allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
        return [n for n in names if self._exists(f"{self._dir(n)}/monitor.json")]

    # ---- what refreshes leave ------------------------------------------------------------------
    def state(self, table: str) -> dict[str, Any]:
        doc = self._read(f"{self._dir(table)}/state.json")
        return doc if isinstance(doc, dict) else {}

    def save_state(self, table: str, state: dict[str, Any]) -> None:
        self._write(f"{self._dir(table)}/state.json", state)

    # ---- refreshes -----------------------------------------------------------------------------
    def _refresh_path(self, table: str, refresh_id: int) -> str:
        return f"{self._dir(table)}/refreshes/{refresh_id}.json"

    def refresh_ids(self, table: str) -> list[int]:
        """The refreshes of ``table``'s monitor, oldest first."""
        out = []
        for name in self._files(f"{self._dir(table)}/refreshes"):
            stem, _, suffix = name.partition(".")
            if suffix == "json" and stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def add_refresh(self, table: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Store a new refresh with the next id (set in the returned copy of ``doc``)."""
        for _ in range(100):
            ids = self.refresh_ids(table)
            refresh = {**doc, "refresh_id": (ids[-1] + 1) if ids else 1}
            if self._create(self._refresh_path(table, refresh["refresh_id"]), refresh):
                return refresh
        raise ResourceAlreadyExists(f"Could not number a new refresh of the monitor of '{table}'.")

    def refresh(self, table: str, refresh_id: int) -> dict[str, Any]:
        doc = self._read(self._refresh_path(table, refresh_id))
        if not isinstance(doc, dict):
            raise ResourceDoesNotExist(
                f"Refresh {refresh_id} of the monitor of table '{table}' does not exist."
            )
        return doc

    def save_refresh(self, table: str, doc: dict[str, Any]) -> None:
        self._write(self._refresh_path(table, int(doc["refresh_id"])), doc)

    def request_cancel(self, table: str, refresh_id: int) -> None:
        self._create(f"{self._dir(table)}/refreshes/{refresh_id}.cancel", {})

    def cancel_requested(self, table: str, refresh_id: int) -> bool:
        return self._exists(f"{self._dir(table)}/refreshes/{refresh_id}.cancel")
