"""Structured logging: one JSON object a line (or plain text), with the request id.

The request id of the HTTP request being handled is kept in a context variable that
the API's middleware sets; every record logged while handling it carries the id.

Records are handed to an in-memory queue and written in batches by a thread of their own
(every 50 ms, one write a batch): a log line costs the event loop a queue put, not a format
and a write to stderr. The queue is drained when the process exits.
"""

from __future__ import annotations

import atexit
import contextvars
import copy
import json
import logging
import queue
import sys
import threading
from datetime import UTC, datetime
from logging.handlers import QueueHandler

__all__ = ["configure_logging", "flush_logging", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and v is not None
        )
        base = (
            f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} {record.levelname:<7} "
            f"{record.name}: {record.getMessage()}"
        )
        text = f"{base} {extra}" if extra else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        return text


class _Queued(QueueHandler):
    """Queues a copy of each record with its message and traceback already made into text (the
    arguments and the exception may change or die before the writer thread formats it)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


class _BatchWriter(threading.Thread):
    """Writes the queued records every ``interval`` seconds, all of them in one write.

    One wake-up a batch, not one a record: on a machine with few cores, a thread that takes
    the GIL for every line slows the event loop down more than formatting the line there did."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], formatter: logging.Formatter) -> None:
        super().__init__(name="modelport-log-writer", daemon=True)
        self._records = records
        self._formatter = formatter
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one drain at a time, so batches keep their order
        self.interval = 0.05

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.drain()
        self.drain()

    def drain(self) -> None:
        with self._lock:
            lines = []
            while True:
                try:
                    record = self._records.get_nowait()
                except queue.Empty:
                    break
                try:
                    lines.append(self._formatter.format(record))
                except Exception:  # a record that cannot be formatted must not stop the writer
                    lines.append(f"(unformattable log record from {record.name}: {record.msg!r})")
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")
                sys.stderr.flush()

    def stop(self) -> None:
        self._stopping.set()
        self.join(5)


_writer: _BatchWriter | None = None


def _stop_writer() -> None:
    global _writer
    if _writer is not None:
        _writer.stop()  # writes what is still queued
        _writer = None


def flush_logging() -> None:
    """Write what is queued now (before a process prints its last line, or exits)."""
    if _writer is not None:
        _writer.drain()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    global _writer
    _stop_writer()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _Queued(records)
    handler.addFilter(_RequestIdFilter())  # in the thread that logs, where the request id is set
    _writer = _BatchWriter(records, JsonFormatter() if fmt == "json" else TextFormatter())
    _writer.start()
    atexit.register(_stop_writer)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("alembic", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
