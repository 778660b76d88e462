"""Run the code blocks of the Markdown docs, in order, as a reader would paste them.

The rules (written for doc authors in ``docs/README.md``):

- Fenced blocks tagged ``bash``, ``console`` or ``python`` run; blocks with any other tag
  (``text``, ``json``, ``yaml``, none) are data, diagrams or help text and never run.
- A runnable block whose first line is ``# not run: <reason>`` (in a console block,
  ``$ # not run: <reason>``) is skipped; the reason is required and reported.
- ``bash``: one script per block, run by ``bash -eo pipefail``; variables it exports
  carry over to the later blocks of the same document (and to its Python blocks).
- ``console``: each ``$ `` line is a command (a line ending in ``\\`` continues it); the
  lines after it, up to the next ``$ ``, are its expected output.
- ``python``: every Python block of a document runs in one interpreter, in order, so
  names defined in one block are seen by the next (as in a notebook).
- A block tagged ``output`` right after a ``bash`` or ``python`` block holds that block's
  expected output (stdout and stderr together).
- Output is compared line by line after :func:`normalise`: runs of blanks become one
  space, timestamps, 32-hex ids, UUIDs and ``dapi…`` tokens become placeholders, a line
  that is only ``...`` matches any number of lines, and ``...`` inside a line any text.

:class:`DocRunner` runs one document; it knows nothing about the server: the caller gives
the environment (HOME, PATH) and the text substitutions (the port of the test server).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Block",
    "DocFailure",
    "DocRunner",
    "matches",
    "normalise",
    "parse_blocks",
]

RUNNABLE = frozenset({"bash", "console", "python"})
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<info>[^`]*)$")
_NOT_RUN = re.compile(r"^(?:\$ )?# not run: (?P<reason>\S.*)$")


@dataclass
class Block:
    """One fenced code block: where it is, its tag, its text and what it is expected to print."""

    doc: str
    line: int  #: 1-based line of the opening fence
    lang: str
    text: str
    expected: str | None = None  #: the ``output`` block after it, if any
    skip_reason: str | None = None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and self.skip_reason is None


def parse_blocks(text: str, doc: str) -> list[Block]:
    """The fenced blocks of a Markdown document, ``output`` blocks attached to the block before."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, lang = opening["fence"], (opening["info"].strip().split() or [""])[0].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{fence}`*\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        content = "\n".join(body) + ("\n" if body else "")
        if lang == "output":
            if not blocks or blocks[-1].lang not in ("bash", "python") or blocks[-1].expected is not None:
                raise ValueError(f"{doc}:{start + 1}: an output block must follow a bash or python block")
            blocks[-1].expected = content
            continue
        block = Block(doc=doc, line=start + 1, lang=lang, text=content)
        if lang in RUNNABLE and body:
            skipped = _NOT_RUN.match(body[0].strip())
            if skipped is not None:
                block.skip_reason = skipped["reason"]
            elif body[0].lstrip().startswith(("# not run", "$ # not run")):
                raise ValueError(f"{doc}:{start + 1}: write '# not run: <reason>'")
        blocks.append(block)
    return blocks


# -- output comparison ----------------------------------------------------------------------------

_PLACEHOLDERS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TIME>"),
    (re.compile(r"\bdapi[0-9a-f]{8,}\b"), "<TOKEN>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<UUID>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<ID>"),
]


def normalise(text: str) -> list[str]:
    """Lines to compare: blanks collapsed, volatile values replaced, empty edges dropped."""
    out = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        for pattern, placeholder in _PLACEHOLDERS:
            line = pattern.sub(placeholder, line)
        out.append(line)
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def _line_pattern(expected: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in expected.split("...")]
    return re.compile("^" + ".*".join(parts) + "$")


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` output fits the ``expected`` output shown in a doc."""
    want, got = normalise(expected), normalise(actual)
    patterns = [None if line == "..." else _line_pattern(line) for line in want]

    def fit(i: int, j: int) -> bool:
        while i < len(patterns):
            pattern = patterns[i]
            if pattern is None:
                return any(fit(i + 1, k) for k in range(j, len(got) + 1))
            if j >= len(got) or not pattern.match(got[j]):
                return False
            i, j = i + 1, j + 1
        return j == len(got)

    return fit(0, 0)


# -- running --------------------------------------------------------------------------------------


class DocFailure(AssertionError):
    """A block failed or printed something other than what its document shows."""


_PY_RUNNER = r"""
import json, os, sys, traceback
proto = os.fdopen(os.dup(1), "w")
namespace = {"__name__": "__main__"}
given = dict(os.environ)
for line in sys.stdin:
    request = json.loads(line)
    # What the bash blocks exported since the last block; what Python code set stays.
    for key in given.keys() - request["env"].keys():
        os.environ.pop(key, None)
    for key, value in request["env"].items():
        if given.get(key) != value:
            os.environ[key] = value
    given = request["env"]
    with open(request["out"], "w") as sink:
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1); os.dup2(sink.fileno(), 2)
        ok = True
        try:
            exec(compile(request["code"], request["where"], "exec"), namespace)
        except BaseException:
            ok = False
            traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2)
            os.close(saved[0]); os.close(saved[1])
    proto.write(json.dumps({"ok": ok}) + "\n"); proto.flush()
"""


@dataclass
class _Result:
    ok: bool
    output: str


@dataclass
class DocRunner:
    """Runs one document's blocks in ``workdir`` with ``env``; ``substitutions`` rewrite the text
    of every block first (e.g. the doc's ``127.0.0.1:8080`` to the test server's address)."""

    workdir: Path
    env: dict[str, str]
    substitutions: dict[str, str] = field(default_factory=dict)
    timeout: float = 300.0
    python: str = sys.executable
    ran: list[Block] = field(default_factory=list)
    skipped: list[Block] = field(default_factory=list)
    _py: subprocess.Popen[str] | None = None

    def run(self, blocks: list[Block]) -> None:
        try:
            for block in blocks:
                if block.lang not in RUNNABLE:
                    continue
                if block.skip_reason is not None:
                    self.skipped.append(block)
                    continue
                self._run_block(block)
                self.ran.append(block)
        finally:
            self.close()

    def close(self) -> None:
        if self._py is not None:
            self._py.kill()
            self._py.wait(10)
            self._py = None

    def _text(self, block: Block) -> str:
        text = block.text
        for old, new in self.substitutions.items():
            text = text.replace(old, new)
        return text

    def _run_block(self, block: Block) -> None:
        text = self._text(block)
        if block.lang == "console":
            for command, expected in _console_steps(text):
                result = self._bash(command)
                self._check(block, command, result, expected or None)
            return
        result = self._bash(text) if block.lang == "bash" else self._python(block, text)
        self._check(block, text, result, block.expected)

    def _check(self, block: Block, code: str, result: _Result, expected: str | None) -> None:
        if not result.ok:
            raise DocFailure(
                f"{block.where}: this {block.lang} block failed:\n{_indent(code)}\n{result.output}"
            )
        if expected is not None and not matches(expected, result.output):
            raise DocFailure(
                f"{block.where}: the output differs from what the document shows.\n"
                f"code:\n{_indent(code)}\nexpected:\n{_indent(expected)}\ngot:\n{_indent(result.output)}"
            )

    def _bash(self, script: str) -> _Result:
        """Run ``script``; exported variables carry over through an environment file."""
        env_file = self.workdir / ".docs-env"
        env_file.touch()
        wrapped = f"source {env_file}\n{script}\nexport -p > {env_file}\n"
        try:
            done = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", wrapped],
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            return _Result(False, f"timed out after {self.timeout:.0f} s\n{exc.output or ''}")
        return _Result(done.returncode == 0, done.stdout)

    def _current_env(self) -> dict[str, str]:
        """``self.env`` plus what the bash blocks exported so far."""
        env_file = self.workdir / ".docs-env"
        if not env_file.exists():
            return dict(self.env)
        dumped = subprocess.run(
            ["bash", "-c", f"source {env_file}; env -0"],
            env=self.env,
            stdout=subprocess.PIPE,
            check=True,
        ).stdout
        pairs = (item.split(b"=", 1) for item in dumped.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs if k not in (b"_", b"SHLVL", b"PWD", b"OLDPWD")}

    def _python(self, block: Block, code: str) -> _Result:
        if self._py is None:
            self._py = subprocess.Popen(
                [self.python, "-u", "-c", _PY_RUNNER],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self._py.stdin is not None and self._py.stdout is not None
        with tempfile.NamedTemporaryFile("r", dir=self.workdir, suffix=".out") as out:
            request = {"code": code, "where": block.where, "env": self._current_env(), "out": out.name}
            self._py.stdin.write(json.dumps(request) + "\n")
            self._py.stdin.flush()
            reply = _read_line(self._py, self.timeout)
            output = Path(out.name).read_text(errors="replace")
        if reply is None:
            self.close()
            return _Result(False, f"timed out after {self.timeout:.0f} s (or the interpreter died)\n{output}")
        return _Result(bool(json.loads(reply)["ok"]), output)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str | None:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    line = proc.stdout.readline()
    return line or None


def _console_steps(text: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console block."""
    steps: list[tuple[str, str]] = []
    command: list[str] | None = None
    output: list[str] = []
    continuing = False
    for line in text.splitlines():
        if continuing and command is not None:
            command.append(line)
            continuing = line.endswith("\\")
            continue
        if line.startswith("$ "):
            if command is not None:
                steps.append(("\n".join(command), "\n".join(output)))
            command, output = [line[2:]], []
            continuing = line.endswith("\\")
        elif command is not None:
            output.append(line)
    if command is not None:
        steps.append(("\n".join(command), "\n".join(output)))
    return steps


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


def venv_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A reader's environment: this interpreter's bin first on PATH, ``home`` as HOME, nothing of
    the test process's modelport or MLflow settings."""
    bin_dir = str(Path(sys.executable).parent)
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
