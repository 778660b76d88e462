"""Files of the OpenAI Files API as bulk jobs use them: batch inputs (``purpose="batch"``),
checked line by line when uploaded, the jobs' output and error files
(``purpose="batch_output"``), and the tabular inputs of table jobs (``purpose="user_data"``:
Parquet, CSV or JSON lines, read when a job is created, ``batch/table_io.py``).

A file is two entries under ``<root>/files/``: ``<id>.jsonl`` (the content) and ``<id>.json``
(its metadata, written last: a file without one is not listed). Each file has an owner; only
the owner and admins see it (another caller is told it does not exist).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from modelport.errors import InvalidParameterValue, NotFound
from modelport.spec.identity import Caller
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_REQUESTS",
    "URL_TASKS",
    "BatchFile",
    "FileStore",
    "InputLine",
    "parse_input",
]

#: The limits on a batch input file: OpenAI's size; twice OpenAI's 50,000 requests.
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_REQUESTS = 100_000
#: The ``url`` of an input line → the task of the OpenAI-compatible route it is sent through.
URL_TASKS = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/embeddings": EMBEDDINGS}
PURPOSES = ("batch", "batch_output", "user_data")
#: Purposes a client may upload.
UPLOADS = ("batch", "user_data")


@dataclass(frozen=True)
class InputLine:
    """One request of a batch input file."""

    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass
class BatchFile:
    """A file's metadata (OpenAI's ``File`` object, plus its owner)."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    owner: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


def _line_error(number: int, message: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Line {number} of the batch input file: {message}")


def parse_input(content: bytes) -> list[InputLine]:
    """The requests of a batch input file; a 400 naming the first line that is not one."""
    lines: list[InputLine] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _line_error(number, f"not valid JSON ({exc}).") from None
        if not isinstance(data, dict):
            raise _line_error(number, "must be a JSON object.")
        custom_id = data.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise _line_error(number, "'custom_id' must be a non-empty string.")
        if custom_id in seen:
            raise _line_error(number, f"'custom_id' {custom_id!r} is used by an earlier line.")
        seen.add(custom_id)
        if data.get("method") != "POST":
            raise _line_error(number, "'method' must be \"POST\".")
        url = data.get("url")
        if not isinstance(url, str) or url not in URL_TASKS:
            raise _line_error(number, f"'url' must be one of {', '.join(URL_TASKS)} (got {url!r}).")
        body = data.get("body")
        if not isinstance(body, dict):
            raise _line_error(number, "'body' must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _line_error(number, "'body.model' must name a serving endpoint.")
        lines.append(InputLine(custom_id, url, body))
        if len(lines) > MAX_REQUESTS:
            raise _line_error(number, f"a batch holds at most {MAX_REQUESTS} requests.")
    if not lines:
        raise InvalidParameterValue("The batch input file holds no requests.")
    return lines


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (written and fsync'd beside it first)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FileStore:
    """The files under ``root`` (blocking: call from a thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root / "files"
        self.root.mkdir(parents=True, exist_ok=True)

    def content_path(self, file_id: str) -> Path:
        if len(file_id) > 64 or not file_id.startswith("file-") or not file_id[5:].isalnum():
            raise NotFound(f"No such File object: {file_id}")
        return self.root / f"{file_id}.jsonl"

    def create(self, owner: str, filename: str, purpose: str, content: bytes) -> BatchFile:
        """Store an uploaded file (a batch input is checked line by line first)."""
        if purpose not in UPLOADS:
            raise InvalidParameterValue(f'\'purpose\' must be "batch" or "user_data" (got {purpose!r}).')
        if purpose == "batch":
            parse_input(content)
        file_id = new_id("file")
        write_atomically(self.content_path(file_id), content)
        return self.register(file_id, owner, filename, purpose)

    def register(self, file_id: str, owner: str, filename: str, purpose: str) -> BatchFile:
        """Write the metadata of a file whose content is in place (it is listed from now on)."""
        size = self.content_path(file_id).stat().st_size
        meta = BatchFile(file_id, size, int(time.time()), filename, purpose, owner)
        write_atomically(self.root / f"{file_id}.json", orjson.dumps(asdict(meta)))
        return meta

    def get(self, caller: Caller, file_id: str) -> BatchFile:
        """The file, when ``caller`` owns it or is an admin; else 404."""
        path = self.content_path(file_id).with_suffix(".json")
        try:
            meta = BatchFile(**orjson.loads(path.read_bytes()))
        except FileNotFoundError:
            raise NotFound(f"No such File object: {file_id}") from None
        if meta.owner != caller.name and not caller.is_admin:
            raise NotFound(f"No such File object: {file_id}")
        return meta

    def content(self, caller: Caller, file_id: str) -> bytes:
        self.get(caller, file_id)
        return self.content_path(file_id).read_bytes()

    def list(self, caller: Caller, purpose: str | None = None) -> list[BatchFile]:
        """The caller's files (an admin's: every file), newest first."""
        found = []
        for path in self.root.glob("file-*.json"):
            try:
                meta = BatchFile(**orjson.loads(path.read_bytes()))
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue
            if (meta.owner == caller.name or caller.is_admin) and purpose in (None, meta.purpose):
                found.append(meta)
        return sorted(found, key=lambda f: (f.created_at, f.id), reverse=True)

    def delete(self, caller: Caller, file_id: str) -> None:
        self.get(caller, file_id)
        self.content_path(file_id).with_suffix(".json").unlink(missing_ok=True)
        self.content_path(file_id).unlink(missing_ok=True)
