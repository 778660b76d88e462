"""Replica bands and scaling decisions (runtime/autoscaler.py): bands from workload sizes,
concurrency, tokens/s or model units, and when ``decide`` scales up, down and to zero."""

from __future__ import annotations

import pytest

from modelport.runtime.autoscaler import Band, Load, band_for, band_for_throughput, decide, uses_throughput


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        ({"workload_size": "Small"}, Band(1, 1, 4, False, 60)),
        ({"workload_size": "Small", "scale_to_zero_enabled": True}, Band(0, 1, 4, True, 60)),
        ({"workload_size": "Medium"}, Band(2, 4, 4, False, 60)),
        ({"workload_size": "Large"}, Band(4, 8, 4, False, 60)),  # capped by max_replicas=8
        ({"workload_size": "12"}, Band(1, 3, 4, False, 60)),
        ({"min_provisioned_concurrency": 4, "max_provisioned_concurrency": 8}, Band(1, 2, 4, False, 60)),
    ],
)
def test_band_from_workload(entity: dict[str, object], expected: Band) -> None:
    assert band_for(entity, per_replica=4, max_replicas=8, idle_seconds=60) == expected


BAND = Band(1, 4, 4, False, 60)


def test_scale_up_is_immediate() -> None:
    assert decide(BAND, Load(1, 13, 0, 10), None).replicas == 4


def test_never_above_max_or_below_min() -> None:
    assert decide(BAND, Load(1, 100, 0, 10), None).replicas == 4
    assert decide(BAND, Load(4, 0, 0, 1000), 0).replicas == 1


def test_scale_down_waits_for_the_delay() -> None:
    first = decide(BAND, Load(4, 2, 0, 100), None, down_delay=30)
    assert first == (first.__class__(4, 100))
    assert decide(BAND, Load(4, 2, 0, 120), first.low_since, down_delay=30).replicas == 4
    assert decide(BAND, Load(4, 2, 0, 131), first.low_since, down_delay=30).replicas == 1


ZERO = Band(0, 2, 4, True, 60)


def test_scale_to_zero_after_idle_period_only() -> None:
    assert decide(ZERO, Load(1, 0, last_request_at=100, now=150), None).replicas == 1
    assert decide(ZERO, Load(1, 0, last_request_at=100, now=161), None).replicas == 0


def test_zero_replicas_stay_zero_until_a_request() -> None:
    assert decide(ZERO, Load(0, 0, last_request_at=100, now=500), None).replicas == 0
    assert decide(ZERO, Load(0, 3, last_request_at=500, now=500), None).replicas == 1


# ---- foundation models sized in tokens/s or model units ------------------------------------------
def test_throughput_band_divides_by_measured_tokens_per_second() -> None:
    entity = {"min_provisioned_throughput": 100, "max_provisioned_throughput": 250}
    band = band_for_throughput(entity, 60.0, per_replica=4, max_replicas=8, idle_seconds=30)
    assert (band.min_replicas, band.max_replicas) == (2, 5)
    capped = band_for_throughput(entity, 10.0, per_replica=4, max_replicas=8, idle_seconds=30)
    assert (capped.min_replicas, capped.max_replicas) == (8, 8)
    zero = band_for_throughput(
        {"max_provisioned_throughput": 100, "scale_to_zero_enabled": True},
        60.0,
        per_replica=4,
        max_replicas=8,
        idle_seconds=30,
    )
    assert (zero.min_replicas, zero.max_replicas, zero.scale_to_zero) == (0, 2, True)


def test_model_units_are_replicas_and_burst_doubles_them() -> None:
    units = {"provisioned_model_units": 2}
    assert uses_throughput(units) and not uses_throughput({"workload_size": "Small"})
    band = band_for_throughput(units, 999.0, per_replica=4, max_replicas=8, idle_seconds=30)
    assert (band.min_replicas, band.max_replicas) == (2, 2)
    burst = band_for_throughput(
        {**units, "burst_scaling_enabled": True}, 1.0, per_replica=4, max_replicas=8, idle_seconds=30
    )
    assert (burst.min_replicas, burst.max_replicas) == (2, 4)
