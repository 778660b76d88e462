"""Per-model virtual environments built with ``uv``, for entities that opt in.

By default replicas run in the server's own Python environment. A served entity whose
``environment_vars`` hold ``MODELPORT_ENV_MANAGER: uv`` (or any entity, with the server
setting ``env_manager = uv``) runs in a virtual environment built from its model's
``requirements.txt`` plus what the replica worker itself imports. Environments live in
``<data-dir>/envs/<key>``, where the key is a hash of everything that goes into one (see
:func:`environment_key`), so models with the same requirements share one.

Guarantees of :meth:`EnvironmentBuilder.ensure`:

- a folder ``<envs>/<key>`` is complete: it is built in ``<envs>/.build-<key>-...`` and
  renamed into place only after every step succeeded (a crash leaves a temp folder that
  the next build of that key removes);
- builds of one key never run twice at once, in one server or several sharing the data
  directory: the builder holds ``fcntl.flock`` on ``<envs>/<key>.lock`` (flock, not
  lockf: its locks belong to the open file, so two threads of one process exclude each
  other too), and whoever waited reuses what the other built;
- every line ``uv`` prints goes to the entity's build log.

The replica worker needs ``modelport`` itself: the environment gets a symlink
``site-packages/modelport`` to the server's package folder. Unlike an install of the
project, it cannot go stale when modelport's code changes, and unlike a ``.pth`` line with
the folder above the package it exposes nothing but the package (not the server's
site-packages, not a source checkout's tests). Replicas start with ``PYTHONSAFEPATH`` so
the working directory does not shadow it either.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import modelport
from modelport.runtime.logs import BuildLog
from modelport.spec.endpoint import ENV_MANAGER_VAR, ENV_MANAGERS

__all__ = [
    "ENV_MANAGERS",
    "ENV_MANAGER_VAR",
    "EnvironmentBuildFailed",
    "EnvironmentBuilder",
    "activate",
    "env_manager_of",
    "environment_key",
    "last_error_line",
    "python_tag",
    "requirement_names",
    "worker_requirements",
]

#: Written into a finished environment; its presence is what "complete" means.
MARKER = "modelport-env.json"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PYTHON_LINE = re.compile(r"^python:\s*['\"]?([0-9][0-9.]*)", re.M)


class EnvironmentBuildFailed(Exception):
    """Building an environment failed; ``message`` says why in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def env_manager_of(entity: Mapping[str, Any], default: str) -> str:
    """Where a served entity's replicas run: its ``MODELPORT_ENV_MANAGER``, else ``default``."""
    value = (entity.get("environment_vars") or {}).get(ENV_MANAGER_VAR)
    return str(value) if value else default


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(text: str) -> set[str]:
    """Canonical names of the packages a requirements file asks for (options, URLs and paths skipped)."""
    names: set[str] = set()
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", ".", "/")) or "://" in line.split(";")[0].split("@")[0]:
            continue
        match = _NAME.match(line)
        if match:
            names.add(_canonical(match.group(1)))
    return names


@cache
def _own_requirements() -> dict[str, str]:
    """modelport's own declared requirements, by canonical name (empty when not installed)."""
    try:
        declared = importlib.metadata.requires("modelport") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    out: dict[str, str] = {}
    for spec in declared:
        if ";" in spec:  # markers: the extras (dev, torch, ...) are not the worker's business
            continue
        match = _NAME.match(spec)
        if match:
            out[_canonical(match.group(1))] = spec.strip()
    return out


def worker_requirements(model_requirements: str, own: Mapping[str, str] | None = None) -> list[str]:
    """What the replica worker imports beyond the model's requirements.

    ``python -m modelport.runtime.worker`` imports orjson, numpy and pandas itself and
    loads the model with ``mlflow.pyfunc``. numpy and pandas come with mlflow and are
    listed unpinned so they never fight the model's pins; orjson takes modelport's own
    specifier; mlflow is added (at the server's version) only when the model names neither
    ``mlflow`` nor ``mlflow-skinny`` (rare: MLflow pins itself in every model it logs).
    """
    own = _own_requirements() if own is None else own
    extras = [own.get("orjson", "orjson"), "numpy", "pandas"]
    if not requirement_names(model_requirements) & {"mlflow", "mlflow-skinny"}:
        extras.append(own.get("mlflow") or f"mlflow=={importlib.metadata.version('mlflow')}")
    return extras


def python_tag() -> str:
    """The server's interpreter, as it goes into environment keys: ``cpython-3.11.7``."""
    return f"{sys.implementation.name}-{platform.python_version()}"


def environment_key(
    requirements: str, constraints: str, python: str, extras: Sequence[str], package_dir: str
) -> str:
    """The cache key of an environment: a hash of everything that goes into it.

    That is the model's ``requirements.txt`` and ``constraints.txt`` as written, the
    interpreter (:func:`python_tag`), the worker's extra requirements and the modelport
    package folder the environment links to.
    """
    material = json.dumps(
        {
            "requirements": requirements,
            "constraints": constraints,
            "python": python,
            "worker": list(extras),
            "modelport": package_dir,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def last_error_line(output: str) -> str:
    """The line of uv's output that says why it failed: the last ``error:`` or ``cause:`` one
    (uv ends an error with its innermost cause; ``hint:`` lines after it are advice)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.lower().startswith(("error:", "cause:", "caused by:")):
            return line
    return lines[-1] if lines else "uv printed nothing"


def activate(env: Mapping[str, str], env_dir: Path, entity_vars: Mapping[str, str]) -> dict[str, str]:
    """A replica's environment variables for a run inside ``env_dir``.

    The environment's ``bin`` goes first on ``PATH`` (tools a model runs are its own), and
    the server's ``PYTHONPATH``/``PYTHONHOME`` are dropped unless the entity sets them.
    """
    out = dict(env)
    for key in ("PYTHONPATH", "PYTHONHOME"):
        if key not in entity_vars:
            out.pop(key, None)
    out["VIRTUAL_ENV"] = str(env_dir)
    out["PATH"] = os.pathsep.join(filter(None, [str(env_dir / "bin"), out.get("PATH", "")]))
    out["PYTHONSAFEPATH"] = "1"  # the working directory must not shadow the linked modelport
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _uv_executable() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


class EnvironmentBuilder:
    """Builds, caches and finds per-model environments under ``root`` (blocking calls).

    ``base_env`` is the environment uv runs with: the server's (less its secrets), so uv's
    own settings (``UV_INDEX_URL``, ``UV_FIND_LINKS``, ``uv.toml``) apply as they would to
    a ``uv`` run by hand.
    """

    def __init__(self, root: Path, base_env: Mapping[str, str], *, uv: str | None = None) -> None:
        self.root = root
        self._base_env = dict(base_env)
        self._uv = uv
        self._package_dir = Path(modelport.__file__).resolve().parent

    # ---- finding -------------------------------------------------------------------------------
    def key(self, model_dir: Path) -> str:
        requirements = _read(model_dir / "requirements.txt")
        return environment_key(
            requirements,
            _read(model_dir / "constraints.txt"),
            python_tag(),
            worker_requirements(requirements),
            str(self._package_dir),
        )

    def env_dir(self, model_dir: Path) -> Path:
        """Where the environment of the model in ``model_dir`` is (whether built or not)."""
        return self.root / self.key(model_dir)

    @staticmethod
    def python_of(env_dir: Path) -> Path:
        return env_dir / "bin" / "python"

    # ---- building ------------------------------------------------------------------------------
    def ensure(self, model_dir: Path, log: BuildLog) -> Path:
        """The interpreter of the model's environment, built first unless already there.

        Raises :class:`EnvironmentBuildFailed` (uv missing, or a uv step failed; all its
        output is in ``log`` by then). Leaves no partial environment behind.
        """
        key = self.key(model_dir)
        final = self.root / key
        if self._complete(final):
            self._log_reuse(final, key, log)
            return self.python_of(final)
        uv = self._uv or _uv_executable()
        if uv is None:
            message = (
                "uv was not found beside the server's Python or on PATH; install it "
                "(pip install uv) or serve this entity with MODELPORT_ENV_MANAGER=local."
            )
            log.write(f"FAILED: {message}")
            raise EnvironmentBuildFailed(message)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked(key, log):
            if self._complete(final):  # built by whoever held the lock before us
                self._log_reuse(final, key, log)
                return self.python_of(final)
            for stale in self.root.glob(f".build-{key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)  # incomplete: no marker
            temp = self.root / f".build-{key}-{os.getpid()}-{time.monotonic_ns()}"
            try:
                self._build(uv, model_dir, temp, key, log)
                temp.rename(final)
            finally:
                shutil.rmtree(temp, ignore_errors=True)
        return self.python_of(final)

    def _complete(self, env_dir: Path) -> bool:
        return (env_dir / MARKER).is_file() and self.python_of(env_dir).exists()

    @staticmethod
    def _log_reuse(env_dir: Path, key: str, log: BuildLog) -> None:
        try:
            built = json.loads((env_dir / MARKER).read_text())["built_at"]
        except (OSError, ValueError, KeyError):
            built = "at an unknown time"
        log.write(f"Reusing environment {key} built {built}.")
        log.write(f"Replicas run {EnvironmentBuilder.python_of(env_dir)}.")

    @contextlib.contextmanager
    def _locked(self, key: str, log: BuildLog) -> Iterator[None]:
        with (self.root / f"{key}.lock").open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.write(f"Waiting for another build of environment {key}.")
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _build(self, uv: str, model_dir: Path, temp: Path, key: str, log: BuildLog) -> None:
        started = time.monotonic()
        requirements = _read(model_dir / "requirements.txt")
        extras = worker_requirements(requirements)
        wanted = _PYTHON_LINE.search(_read(model_dir / "python_env.yaml"))
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if wanted and ".".join(wanted.group(1).split(".")[:2]) != here:
            log.write(
                f"WARNING: the model was logged with Python {wanted.group(1)}; its environment "
                f"uses the server's Python {platform.python_version()} (no other interpreter is installed)."
            )
        log.write(f"Building environment {key} with uv in {self.root}.")
        # uv runs in the model folder, as MLflow runs pip: relative paths in requirements resolve.
        self._run([uv, "venv", "--relocatable", "--python", sys.executable, str(temp)], model_dir, log)
        python = self.python_of(temp)
        install = [uv, "pip", "install", "--python", str(python)]
        if requirements.strip():
            install += ["-r", str(model_dir / "requirements.txt")]
        else:
            log.write("The model has no requirements.txt: installing what the worker needs only.")
        if (model_dir / "constraints.txt").is_file():
            install += ["-c", str(model_dir / "constraints.txt")]
        self._run([*install, *extras], model_dir, log)
        site = temp / "lib" / f"python{here}" / "site-packages"
        link = site / "modelport"
        if not site.is_dir() or link.exists():
            raise EnvironmentBuildFailed(
                f"cannot link modelport into {site}: "
                + ("a package named modelport is installed there" if link.exists() else "no such folder")
            )
        link.symlink_to(self._package_dir, target_is_directory=True)
        built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        marker = {"key": key, "built_at": built, "python": python_tag(), "worker": extras}
        (temp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        log.write(f"Built environment {key} in {time.monotonic() - started:.1f}s.")
        log.write(f"Replicas run {self.python_of(self.root / key)}.")

    def _run(self, args: list[str], cwd: Path, log: BuildLog) -> None:
        """Run one uv command, every line of its output into ``log``; raise if it fails."""
        log.write("$ " + " ".join(args))
        lines: list[str] = []
        with subprocess.Popen(
            args,
            cwd=cwd,
            env=self._base_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                log.write(line)
        if proc.returncode != 0:
            reason = last_error_line("\n".join(lines))
            log.write(f"FAILED: uv exited with status {proc.returncode}.")
            raise EnvironmentBuildFailed(f"uv could not build the model's environment: {reason}")
