"""The lease, the fence and the change counter through PgBouncer in transaction pooling mode
(Debian's package, installed by ``make test``): every statement may land on another server
connection, so nothing may rely on session state (issue 15). Skipped without PgBouncer outside
CI.

PgBouncer runs as a child of this module on a free port, in front of the test PostgreSQL, with
``pool_mode = transaction`` and a pool of 3 server connections for up to 4 client threads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.errors import LeaseLost
from modelport.store import Database, open_database
from modelport.store.leases import fence
from tests.serverproc import free_port
from tests.support.stores import fresh_pg_database

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
)


@pytest.fixture(scope="module")
def bouncer() -> Iterator[int]:
    """PgBouncer's port (transaction pooling in front of 127.0.0.1:5432)."""
    if PGBOUNCER is None:
        if os.environ.get("CI"):
            raise AssertionError("pgbouncer is not installed: `make test` installs Debian's package")
        pytest.skip("pgbouncer is not installed (make test installs it)")
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o777)  # run as the postgres user when this is root (PgBouncer refuses root)
    port = free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n* = host=127.0.0.1 port=5432\n\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder}/users.txt\npool_mode = transaction\n"
        "max_client_conn = 100\ndefault_pool_size = 3\n"
        f"logfile = {folder}/pgbouncer.log\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    argv = [PGBOUNCER, *(["-u", "postgres"] if os.getuid() == 0 else []), str(folder / "pgbouncer.ini")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        log = folder / "pgbouncer.log"
        while not (log.exists() and "listening on" in log.read_text()):
            assert proc.poll() is None, f"pgbouncer exited: {log.read_text() if log.exists() else ''}"
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def db(bouncer: int) -> Iterator[Database]:
    with fresh_pg_database() as direct:
        through = direct.replace("@127.0.0.1:5432/", f"@127.0.0.1:{bouncer}/")
        assert through != direct, direct
        database = open_database(through)  # migrations run through the pooler too
        yield database
        database.close()


def test_the_lease_and_its_fence_work_through_transaction_pooling(db: Database) -> None:
    first = db.leases.acquire_or_renew("r", "a", 5)
    assert first is not None and first.epoch == 1
    for _ in range(20):  # renewals, each possibly on another server connection
        renewed = db.leases.acquire_or_renew("r", "a", 5)
        assert renewed is not None and renewed.epoch == 1
    assert db.leases.acquire_or_renew("r", "b", 5) is None
    with db.engine.begin() as conn:
        fence(conn, "r", 1)  # the holder's write passes
    assert db.leases.release("r", "a")
    second = db.leases.acquire_or_renew("r", "b", 5)
    assert second is not None and second.epoch == 2
    with pytest.raises(LeaseLost), db.engine.begin() as conn:
        fence(conn, "r", 1)  # the deposed holder's is refused


def test_contenders_never_share_an_epoch_through_the_pooler(db: Database) -> None:
    """Four threads campaign for a short lease through 3 pooled server connections."""
    held: dict[int, set[str]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def campaign(holder: str) -> None:
        try:
            for _ in range(40):
                lease = db.leases.acquire_or_renew("short", holder, 0.05)
                if lease is not None:
                    with lock:
                        held.setdefault(lease.epoch, set()).add(holder)
                # A holder pauses past its ttl (the lease changes hands); the others poll.
                time.sleep(0.07 if lease is not None else 0.005)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=campaign, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(held) > 4, held  # the lease changed hands many times
    assert all(len(holders) == 1 for holders in held.values()), held


def test_the_change_counter_moves_with_each_write_through_the_pooler(db: Database) -> None:
    before = db.changes.version()
    for i in range(10):
        db.principals.create(f"user-{i}", "user", display_name=None, is_admin=False, now_ms=1)
    assert db.changes.version() == before + 10
