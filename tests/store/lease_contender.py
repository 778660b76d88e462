"""A server process's leadership, alone in a process, for tests/store/test_leadership.py.

    python -m tests.store.lease_contender STORE_URL LEASE_NAME TTL_SECONDS

Campaigns with :class:`~modelport.control.leadership.Leadership` and prints one JSON object a
line: ``{"event": "elected", "epoch": E, "t": T}`` and ``{"event": "deposed", "t": T}`` (``t``
is ``time.monotonic()``, the same clock for every process of the machine). Commands on stdin:

- ``hold``: remember the current epoch, the token a leader's work carries
  (``{"event": "holding", "epoch": E}``, ``E`` null when not leading);
- ``write TAG``: one fenced write with the held epoch, into :data:`writes` (the row, then
  the fence): ``{"event": "wrote"}`` or ``{"event": "refused", "error_code": ...}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from sqlalchemy import Column, Integer, MetaData, String, Table, select

from modelport.control.leadership import Leadership
from modelport.errors import ModelportError
from modelport.store import Database, open_database
from modelport.store.leases import fence

#: A table of the tests' own, standing for the leader's writes (replica rows, config status).
writes_md = MetaData()
writes = Table(
    "fenced_writes",
    writes_md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lease", String(64), nullable=False),
    Column("tag", String(64), nullable=False),
    Column("epoch", Integer, nullable=False),
)

_out = threading.Lock()


def fenced_write(db: Database, name: str, tag: str, epoch: int) -> None:
    """A leader's write: the row, then the fence as the transaction's last statement."""
    with db.engine.begin() as conn:
        conn.execute(writes.insert().values(lease=name, tag=tag, epoch=epoch))
        fence(conn, name, epoch)


def tags(db: Database, name: str) -> list[str]:
    """The tags written under lease ``name``, in order."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(writes.c.tag).where(writes.c.lease == name).order_by(writes.c.id))
        return [row.tag for row in rows]


def say(**event: object) -> None:
    with _out:
        print(json.dumps({**event, "t": time.monotonic()}), flush=True)


def main() -> None:
    url, name, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    db = open_database(url, migrate=False)
    leadership = Leadership(
        db.leases,
        name=name,
        ttl_seconds=ttl,
        on_elected=lambda epoch: say(event="elected", epoch=epoch),
        on_deposed=lambda: say(event="deposed"),
    )
    leadership.start_thread()
    held: int | None = None
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "hold":
            held = leadership.epoch
            say(event="holding", epoch=held)
        elif command == "write":
            try:
                fenced_write(db, name, arg, held or 0)
            except ModelportError as exc:
                say(event="refused", error_code=exc.error_code)
            else:
                say(event="wrote")
    leadership.close()
    db.close()


if __name__ == "__main__":
    main()
