"""Replica-count decisions: a pure function of a snapshot, the band and the clock.

The band comes from the served entity: ``workload_size`` (Small 0-4, Medium 8-16, Large
16-64 concurrent requests, as Databricks defines them; a number N means 0-N) or
``min/max_provisioned_concurrency``; one replica is counted for ``per_replica``
concurrent requests. Scale-up follows demand at once; scale-down waits until demand has
been lower for ``down_delay`` seconds; with scale-to-zero, an entity idle for
``idle_seconds`` goes to zero replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Band", "Decision", "Load", "band_for", "band_for_throughput", "decide", "uses_throughput"]

_SIZES = {"Small": (0, 4), "Medium": (8, 16), "Large": (16, 64)}


@dataclass(frozen=True)
class Band:
    min_replicas: int
    max_replicas: int
    per_replica: int
    scale_to_zero: bool
    idle_seconds: float


@dataclass(frozen=True)
class Load:
    """What the replica set saw: now, and the peak since the last decision."""

    replicas: int
    peak_concurrency: int
    last_request_at: float
    now: float


@dataclass(frozen=True)
class Decision:
    replicas: int
    low_since: float | None  # when demand first fell below the current count (scale-down timer)


def band_for(entity: dict[str, Any], *, per_replica: int, max_replicas: int, idle_seconds: float) -> Band:
    if entity.get("max_provisioned_concurrency") is not None:
        lo, hi = (
            int(entity.get("min_provisioned_concurrency") or 0),
            int(entity["max_provisioned_concurrency"]),
        )
    else:
        size = str(entity.get("workload_size") or "Small")
        lo, hi = _SIZES.get(size, (0, int(size) if size.isdecimal() else 4))
    scale_to_zero = bool(entity.get("scale_to_zero_enabled"))
    hi_replicas = max(1, min(max_replicas, math.ceil(hi / per_replica)))
    lo_replicas = min(hi_replicas, math.ceil(lo / per_replica))
    if not scale_to_zero:
        lo_replicas = max(1, lo_replicas)
    return Band(lo_replicas, hi_replicas, per_replica, scale_to_zero, idle_seconds)


def uses_throughput(entity: dict[str, Any]) -> bool:
    """Whether the entity sizes its band in tokens/s or model units (foundation models)."""
    return any(
        entity.get(k) is not None
        for k in ("min_provisioned_throughput", "max_provisioned_throughput", "provisioned_model_units")
    )


def band_for_throughput(
    entity: dict[str, Any],
    tokens_per_replica: float,
    *,
    per_replica: int,
    max_replicas: int,
    idle_seconds: float,
) -> Band:
    """The band of a foundation model sized in tokens/s: ``min/max_provisioned_throughput``
    divided by what one replica was measured to generate (``tokens_per_replica``), or
    ``provisioned_model_units`` replicas (one unit = one replica; ``burst_scaling_enabled``
    allows twice as many under load)."""
    scale_to_zero = bool(entity.get("scale_to_zero_enabled"))
    units = entity.get("provisioned_model_units")
    if units is not None:
        lo = int(units)
        hi = lo * 2 if entity.get("burst_scaling_enabled") else lo
    else:
        tps = max(tokens_per_replica, 1.0)
        lo = math.ceil(int(entity.get("min_provisioned_throughput") or 0) / tps)
        hi = math.ceil(int(entity.get("max_provisioned_throughput") or 0) / tps)
    hi = max(1, min(max_replicas, max(lo, hi)))
    lo = min(hi, lo)
    if not scale_to_zero:
        lo = max(1, lo)
    return Band(lo, hi, per_replica, scale_to_zero, idle_seconds)


def decide(band: Band, load: Load, low_since: float | None, *, down_delay: float = 30.0) -> Decision:
    """The number of replicas the entity should run now."""
    wanted = math.ceil(load.peak_concurrency / band.per_replica) if load.peak_concurrency else 0
    floor = band.min_replicas
    if band.scale_to_zero and floor == 0:
        idle = load.now - load.last_request_at
        if load.peak_concurrency == 0 and idle >= band.idle_seconds:
            return Decision(0, None)
        floor = 1 if load.replicas > 0 or load.peak_concurrency else 0
    target = max(floor, min(band.max_replicas, wanted))
    if target >= load.replicas:
        return Decision(target, None)
    started = low_since if low_since is not None else load.now
    if load.now - started >= down_delay:
        return Decision(target, None)
    return Decision(load.replicas, started)
