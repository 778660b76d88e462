"""What the registry guard costs a call to the embedded MLflow server.

One real ``modelport serve``; a registered model the user may read (CAN_READ). Interleaved
rounds of the same read, ``GET /api/2.0/mlflow/registered-models/get``, by:

- an admin: the guard routes the request (MLflow's URL map) but checks no permission;
- a user with CAN_READ: the guard also parses the request and reads the grants (one store read);
- ``GET /version`` (any caller, no body to parse): the floor of a call through the mount.

Prints median and p99 latency per caller and the user/admin ratio, the permission check's
share; sequential calls (c=1), so the figures are latency, not throughput.

    .venv/bin/python bench/mlflow_guard.py [--rounds 5] [--calls 200] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.serverproc import ADMIN_TOKEN, ServerProcess


def timed(client: httpx.Client, path: str, params: dict[str, str], calls: int) -> list[float]:
    out: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        resp = client.get(path, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, resp.text
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp)).start(timeout=180)
        try:
            admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            name = "bench-guard-model"
            assert (
                admin.post("/api/2.0/mlflow/registered-models/create", json={"name": name}).status_code == 200
            )
            scim = admin.post("/api/2.0/preview/scim/v2/Users", json={"userName": "bench-reader"})
            assert scim.status_code == 201, scim.text
            token = admin.post(
                "/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": "bench-reader"}
            ).json()["token_value"]
            grant = admin.patch(
                f"/api/2.0/permissions/registered-models/{name}",
                json={"access_control_list": [{"user_name": "bench-reader", "permission_level": "CAN_READ"}]},
            )
            assert grant.status_code == 200, grant.text
            user = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
            get = ("/api/2.0/mlflow/registered-models/get", {"name": name})
            peers = {"admin (route only)": (admin, *get), "user CAN_READ (checked)": (user, *get)}
            peers["GET /version (floor)"] = (admin, "/version", {})
            for client, path, params in peers.values():
                timed(client, path, params, 20)  # warm: caches, connections
            samples: dict[str, list[float]] = {k: [] for k in peers}
            for _ in range(args.rounds):
                for label, (client, path, params) in peers.items():
                    samples[label] += timed(client, path, params, args.calls)
        finally:
            server.stop()
    load = os.getloadavg()[0]
    base = statistics.median(samples["admin (route only)"])
    lines = [
        f"### MLflow guard cost ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load {load:.1f})",
        "",
        "| caller | median ms | p99 ms | median vs admin |",
        "|---|---|---|---|",
    ]
    for label, values in samples.items():
        values.sort()
        p99 = values[int(len(values) * 0.99) - 1]
        median = statistics.median(values)
        lines.append(f"| {label} | {median:.2f} | {p99:.2f} | {median / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
