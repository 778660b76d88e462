"""What a replica set tells the endpoint event log: started, stopped, crashed, scaled, cold
starts (``ReplicaSet``'s ``on_event``), and how the local backend words them for the log.

The replicas are fakes made through ``ReplicaSpec.make_replica``: no process or socket."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from modelport.entities.registry_handle import RegistryHandle
from modelport.runtime import protocol
from modelport.runtime.autoscaler import Band
from modelport.runtime.local import LocalBackend, RuntimeOptions
from modelport.runtime.logs import LogStore
from modelport.runtime.replica import ReplicaSpec
from modelport.runtime.replica_set import ReplicaSet
from modelport.store.records import EndpointRecord


class Process:
    returncode: int | None = None


class FakeReplica:
    """Ready 10 ms after ``start``; answers every predict and ping; ``process.returncode`` set
    by the test is a crash."""

    def __init__(self, spec: ReplicaSpec, index: int) -> None:
        self.index, self.pid = index, 1000 + index
        self.ready = self.was_ready = self.closing = False
        self.in_flight = self.sent = 0
        self.started_at = 0.0
        self.process = Process()
        self.protocol = protocol.VERSION

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def start(self) -> None:
        self.started_at = time.monotonic()
        await asyncio.sleep(0.01)
        self.ready = self.was_ready = True

    async def stop(self) -> None:
        self.closing, self.ready = True, False
        self.process.returncode = 0

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.returncode = -9

    async def ping(self, timeout: float = 5.0) -> bytes:
        return b'{"requests": 0, "in_flight": 0}'

    async def call(self, kind: int, payload: bytes, timeout: float | None) -> tuple[int, bytes]:
        return protocol.OK, b'{"predictions": [1]}'


def test_a_set_reports_cold_start_crash_replacement_and_scale_to_zero() -> None:
    nowhere = Path("/nonexistent")
    spec = ReplicaSpec(nowhere / "m", nowhere / "run", "t", nowhere / "log", {}, make_replica=FakeReplica)  # type: ignore[arg-type]
    band = Band(min_replicas=0, max_replicas=2, per_replica=1, scale_to_zero=True, idle_seconds=60)
    events: list[tuple[str, dict[str, Any]]] = []
    rs = ReplicaSet("a", spec, band, on_event=lambda kind, data: events.append((kind, data)))

    async def main() -> None:
        assert await rs.predict(b"{}", 5) == b'{"predictions": [1]}'  # from zero: a cold start
        assert [k for k, _ in events] == ["replica_started", "cold_start"]
        assert events[0][1]["index"] == 1 and events[0][1]["pid"] == 1001 and events[0][1]["seconds"] > 0
        assert events[1][1]["replicas"] == 1 and events[1][1]["seconds"] >= events[0][1]["seconds"] - 0.001
        events.clear()
        rs.replicas[0].process.returncode = 3  # type: ignore[attr-defined]
        await rs.tick(time.monotonic())
        assert events == [
            ("replica_died", {"index": 1, "pid": 1001, "exit": 3}),
            ("replica_started", {"index": 2, "pid": 1002, "seconds": events[1][1]["seconds"]}),
        ]  # the replacement: no replica_scaled
        events.clear()
        await rs.tick(time.monotonic() + 120)  # idle past idle_seconds: to zero
        assert events == [
            ("replica_stopped", {"index": 2, "pid": 1002, "reason": "scaled down"}),
            ("replica_scaled", {"from": 1, "to": 0}),
        ]
        events.clear()
        await rs.scale_to(1)
        await rs.close(reason="config version 4 serves")
        assert [k for k, _ in events] == ["replica_started", "replica_stopped"]
        assert events[1][1]["reason"] == "config version 4 serves"

    asyncio.run(main())


def test_the_local_backend_words_the_events_for_the_log(tmp_path: Path) -> None:
    recorded: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    options = RuntimeOptions(run_dir=tmp_path / "run", models_dir=tmp_path / "models")
    logs = LogStore(tmp_path / "logs")
    local = LocalBackend(
        RegistryHandle(), logs, options, {}, on_event=lambda *a, **kw: recorded.append((a, kw))
    )
    endpoint = EndpointRecord(
        id="e1", name="ep", creator="admin", created_ms=1, updated_ms=1, config_update="NOT_UPDATING"
    )
    rs = local._new_set(endpoint, 3, {"name": "v3", "workload_size": "Small"}, tmp_path, None)
    rs._on_event("replica_died", {"index": 2, "pid": 77, "exit": 3})
    rs._on_event("replica_hung", {"index": 2, "pid": 78, "seconds": 10.0})
    rs._on_event("replica_scaled", {"from": 1, "to": 2})
    rs._on_event("cold_start", {"seconds": 1.23456, "replicas": 1})
    rs._on_event("something_else", {})
    kinds = [(a[0], a[1], kw["config_version"], kw["served_entity"]) for a, kw in recorded]
    assert kinds == [
        ("e1", "REPLICA_CRASHED", 3, "v3"),
        ("e1", "REPLICA_CRASHED", 3, "v3"),
        ("e1", "REPLICA_SCALED", 3, "v3"),
        ("e1", "COLD_START", 3, "v3"),
    ]
    died, hung, scaled, cold = recorded
    assert died[0][2] == "Replica 2 (pid 77) of 'v3' exited with status 3; it is replaced."
    assert died[1]["details"] == {"index": 2, "pid": 77, "exit_code": 3}
    assert died[1]["tail_of"] == logs.runtime_log_path("e1", "v3")  # the sink reads the tail
    assert hung[1]["details"]["reason"] == "hung" and "health ping within 10 s" in hung[0][2]
    assert scaled[0][2] == "Served entity 'v3' scaled from 1 to 2 replica(s)."
    assert cold[1]["details"] == {"seconds": 1.235, "replicas": 1} and "1.23 s" in cold[0][2]
