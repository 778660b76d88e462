"""Replica bands of foundation models sized in tokens/s or model units (runtime/autoscaler.py)."""

from __future__ import annotations


def test_throughput_band_divides_by_measured_tokens_per_second() -> None:
    from modelport.runtime.autoscaler import band_for_throughput

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
    from modelport.runtime.autoscaler import band_for_throughput, uses_throughput

    units = {"provisioned_model_units": 2}
    assert uses_throughput(units) and not uses_throughput({"workload_size": "Small"})
    band = band_for_throughput(units, 999.0, per_replica=4, max_replicas=8, idle_seconds=30)
    assert (band.min_replicas, band.max_replicas) == (2, 2)
    burst = band_for_throughput(
        {**units, "burst_scaling_enabled": True}, 1.0, per_replica=4, max_replicas=8, idle_seconds=30
    )
    assert (burst.min_replicas, burst.max_replicas) == (2, 4)
