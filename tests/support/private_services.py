"""A PostgreSQL cluster and a Redis server of a test's own, on free ports of 127.0.0.1.

For tests that cannot use the machine's shared services on 127.0.0.1:5432 and :6379: those
that run inside a network namespace (tests/support/netns.py; the namespace's 127.0.0.1 is
another loopback, where the shared services do not listen), and those that stop and start the
services. Started from a thread inside a namespace, a server listens in that namespace.

Each server keeps everything in a folder under the ``root`` it is given (data, log, Unix socket)
and is stopped by :meth:`stop`; the folder itself is the caller's to remove.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.serverproc import free_port

__all__ = ["PrivatePostgres", "PrivateRedis", "postgres_bin", "services_missing"]

#: The longest path a Unix socket may have (``sun_path`` is 108 bytes with its NUL).
SOCKET_PATH_MAX = 107


def postgres_bin() -> Path | None:
    """The PostgreSQL server binaries: ``MODELPORT_TEST_PG_BIN``, else the newest
    ``/usr/lib/postgresql/<major>/bin`` (Debian's layout); None when there are none."""
    named = os.environ.get("MODELPORT_TEST_PG_BIN")
    if named:
        return Path(named) if (Path(named) / "initdb").exists() else None
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def services_missing() -> str | None:
    """What is missing here to run :class:`PrivatePostgres` and :class:`PrivateRedis`, or None."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries not found under /usr/lib/postgresql (MODELPORT_TEST_PG_BIN)"
    if os.geteuid() == 0 and not _user_exists("postgres"):
        return "running as root without a `postgres` user to run initdb and postgres as"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without `runuser` (util-linux) to run initdb and postgres as postgres"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    return None


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in ``root/postgres``: trust auth, ``fsync`` off, TCP on
    127.0.0.1 only (at a free port), its Unix socket in its data folder.

    As root, ``initdb``, ``pg_ctl`` and so the server run as the ``postgres`` user, who owns
    the data folder; ``root`` and its parents must then be searchable by that user (a folder
    made with ``tempfile.mkdtemp`` under /tmp, made 0o755, is; pytest's ``tmp_path`` is not).
    The server runs in a session of its own (``pg_ctl`` detaches it): only :meth:`stop` ends it.
    """

    def __init__(self, root: Path, database: str = "modelport") -> None:
        self.root = root
        self.data = root / "postgres"
        self.database = database
        self.port: int | None = None
        #: Seconds :meth:`start` took (initdb, start, create the database).
        self.start_seconds: float | None = None
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database, as ``modelport serve --store`` takes it."""
        assert self.port is not None, "not started"
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        return self.data / "server.log"

    def start(self, timeout: float = 60.0) -> str:
        """initdb, start the server, create the database; the database's URL.

        Raises RuntimeError with the tools' output (and the server's log) when a step fails."""
        started = time.monotonic()
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError(services_missing() or "PostgreSQL binaries not found")
        socket_path = f"{self.data}/.s.PGSQL.65535"
        if len(socket_path) > SOCKET_PATH_MAX:
            raise ValueError(f"{self.data} is too long for a Unix socket path (at most 88 characters)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700)
        if self._as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
            if subprocess.run([*self._as_postgres, "test", "-w", str(self.data)]).returncode != 0:
                raise RuntimeError(
                    f"the postgres user cannot write {self.data}: a parent folder of it is not "
                    "searchable by others (use a folder under /tmp made 0o755)"
                )
        self._run(
            str(binaries / "initdb"),
            *(
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ),
        )
        self.port = free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        pg_ctl = [str(binaries / "pg_ctl"), "-D", str(self.data)]
        self._run(*pg_ctl, "-l", str(self.log_path), "-w", "-t", str(int(timeout)), "start", log=True)
        self._create_database()
        self.start_seconds = time.monotonic() - started
        return self.url

    def _create_database(self) -> None:
        import psycopg

        assert self.port is not None
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def _run(self, *args: str, log: bool = False) -> None:
        done = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = self.log_tail() if log else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{tail}"
            )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def server_pid(self) -> int | None:
        """The postmaster's pid (first line of ``postmaster.pid``), None when it is not running."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m immediate``: the data are thrown away) and wait
        for it to exit; SIGKILL if it does not within 10 s. Safe to call twice, or after a
        failed start."""
        binaries = postgres_bin()
        pid = self.server_pid()
        if pid is None or binaries is None:
            return
        subprocess.run(
            [
                *self._as_postgres,
                str(binaries / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=30,
        )
        _wait_gone(pid, 10)


class PrivateRedis:
    """A ``redis-server`` without persistence on a free port of 127.0.0.1, working in
    ``root/redis``. It is a child of this process in a session of its own: :meth:`stop` kills
    its process group."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "redis"
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        #: Seconds :meth:`start` took until the server answered PING.
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "not started"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.folder / "redis.log"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it answers PING; its URL."""
        started = time.monotonic()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.folder)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = started + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.02)
        self.start_seconds = time.monotonic() - started
        return self.url

    def ping(self) -> bool:
        """Whether the server answers PING now (a new connection from the calling thread)."""
        assert self.port is not None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGKILL the server's process group and reap it. Safe to call twice."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait until process ``pid`` (not our child) has exited; SIGKILL it after ``timeout``."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            return
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; its state says it is gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False
