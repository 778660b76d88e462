"""A progress line on stderr for a command that waits on the server (``modelport tables query``).

On a terminal the line is rewritten in place and erased when the wait ends; otherwise (a log, a
pipe) it is printed as plain lines, one every :data:`PLAIN_EVERY_SECONDS`. Nothing is shown
before :data:`QUIET_SECONDS`, so a quick command prints nothing but its answer.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

__all__ = ["PLAIN_EVERY_SECONDS", "QUIET_SECONDS", "ProgressLine", "describe"]

QUIET_SECONDS = 1.0
PLAIN_EVERY_SECONDS = 5.0
_ERASE = "\r\x1b[2K"


def describe(progress: dict[str, Any]) -> str:
    """``{"percent", "elapsed_s"[, "ai_query_requests"]}`` as one line of text."""
    parts = []
    if progress.get("percent") is not None:
        parts.append(f"{float(progress['percent']):.0f}% done")
    parts.append(f"{float(progress.get('elapsed_s') or 0):.1f} s elapsed")
    if progress.get("ai_query_requests"):
        parts.append(f"{int(progress['ai_query_requests'])} ai_query requests answered")
    return "query running: " + ", ".join(parts)


class ProgressLine:
    """Shows the reports given to :meth:`update` (a context manager: the line is erased on exit).

    ``stream`` defaults to ``sys.stderr``; ``tty`` to whether it is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._shown = False
        self._last_plain: float | None = None

    def update(self, progress: dict[str, Any]) -> None:
        elapsed = float(progress.get("elapsed_s") or 0)
        if elapsed < QUIET_SECONDS:
            return
        if self._tty:
            self._stream.write(_ERASE + describe(progress))
            self._shown = True
        elif self._last_plain is None or elapsed - self._last_plain >= PLAIN_EVERY_SECONDS:
            self._stream.write(describe(progress) + "\n")
            self._last_plain = elapsed
        self._stream.flush()

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._shown:
            self._stream.write(_ERASE)
            self._stream.flush()
            self._shown = False
