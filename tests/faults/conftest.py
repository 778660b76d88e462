"""Faults injected into a real server: private PostgreSQL and Redis the tests stop and start.

Nothing here touches the shared services on 5432 and 6379. The session starts:

- ``private_pg``: a PostgreSQL 15 cluster of its own (``initdb`` into a temporary folder once a
  session, trust auth, a free port), run as the ``postgres`` user when the tests run as root
  (``initdb`` refuses root), so that a test can ``pg_ctl stop -m fast`` and start it again;
- ``private_redis``: a ``redis-server`` on a free port that a test can kill and restart;
- ``fault_server``: one ``modelport serve`` on both, its spool folder a 1 MiB tmpfs
  (``mount -t tmpfs``; without the right to mount, the spool test skips outside CI), with short
  timeouts so that each fault shows within seconds: ``--external-timeout 1``,
  ``--replica-health-seconds 2``, ``--tables-memory-records 5``, ``--tables-flush-seconds 1``.

Each test leaves the services running as it found them. Without the PostgreSQL binaries or
``redis-server`` the tests skip, and fail under ``CI``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess, free_port
from tests.support.endpoints import wait_settled

PG_BIN = Path(os.environ.get("MODELPORT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
API = "/api/2.0/serving-endpoints"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Records the server keeps in memory while the spool's disk is full (``--tables-memory-records``).
MEMORY_RECORDS = 5
#: Seconds a replica may leave a health ping unanswered (``--replica-health-seconds``).
HEALTH_SECONDS = 2


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        raise RuntimeError(what)
    pytest.skip(what)


class PrivatePostgres:
    """A PostgreSQL cluster in a folder of its own, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="modelport-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/modelport"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        import psycopg

        admin_url = self.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE modelport")

    def remove(self) -> None:
        with_stop = subprocess.run(
            [*self._as, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        del with_stop
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A ``redis-server`` without persistence on a free port; :meth:`kill` and :meth:`start`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer a ping within 10 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        _missing(f"PostgreSQL binaries not found in {PG_BIN} (MODELPORT_TEST_PG_BIN)")
    pg = PrivatePostgres()
    try:
        pg.start()
        pg.create_database()
        yield pg
    finally:
        pg.remove()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


class SpoolDisk:
    """The server's spool folder on a 1 MiB tmpfs, and a file that fills it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mounted = False
        self.reason = ""
        folder.mkdir(parents=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True
        )
        self.mounted = done.returncode == 0
        self.reason = (done.stderr or done.stdout).strip()

    @property
    def filler(self) -> Path:
        return self.folder / "filler"

    def fill(self) -> None:
        """Write zeros until the file system says it is full."""
        chunk = b"\0" * 4096
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while True:
                os.write(fd, chunk)
        except OSError:
            pass
        finally:
            os.close(fd)
        # Whatever a 4 KiB write could not take: one byte at a time.
        fd = os.open(self.filler, os.O_WRONLY | os.O_APPEND)
        try:
            while os.write(fd, b"\0"):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spool_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpoolDisk]:
    disk = SpoolDisk(tmp_path_factory.mktemp("modelport-faults") / "spool")
    yield disk
    disk.unmount()


@pytest.fixture(scope="session")
def fault_server(
    private_pg: PrivatePostgres, private_redis: PrivateRedis, spool_disk: SpoolDisk
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        spool_disk.folder.parent,
        store=private_pg.url,
        extra_args=[
            "--redis",
            private_redis.url,
            "--external-timeout",
            "1",
            "--request-timeout",
            "5",
            "--replica-health-seconds",
            str(HEALTH_SECONDS),
            "--tables-memory-records",
            str(MEMORY_RECORDS),
            "--tables-flush-seconds",
            "1",
        ],
    ).start(timeout=300)  # /ready: the registry loaded (a store outage while it loads fails it)
    yield proc
    proc.stop()


@pytest.fixture
def http(fault_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fault_server.url, headers=HEADERS, timeout=30) as client:
        yield client


def create(http: httpx.Client, name: str, entities: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    config = {"served_entities": entities, **extra.pop("config", {})}
    r = http.post(API, json={"name": name, "config": config, **extra})
    assert r.status_code == 200, r.text
    return wait_settled(http, name, timeout=120, poll=0.1)


HELLO = {"messages": [{"role": "user", "content": "hello there"}]}


def query(client: httpx.Client, name: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(f"/serving-endpoints/{name}/invocations", json=body or HELLO)


def metric(client: httpx.Client, name: str) -> float:
    """The value of an unlabelled sample of ``/metrics`` (0 when absent)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
