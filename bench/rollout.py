"""How fast a canary whose candidate starts failing is rolled back, and how many live queries fail.

One ``modelport serve`` (system endpoints off) serves endpoint ``canary``: version 1 of a small
pyfunc (``bench-canary``), then a config update to [v1, v2] with all the traffic to v2 and the
issue's policy: ``{"steps": [5, 25, 50, 100], "step_seconds": S, "evaluation_seconds": E,
"max_error_rate": 0.01, "max_p99_ms": 200, "min_requests_per_step": 200}``. Closed-loop client
threads query it all along (a 1-row ``dataframe_records`` body, x uniform in [0, 1)). Once the
rollout has run healthy for ``--healthy`` seconds, version 2 starts raising for x > 0.8 (a
control file its ``predict`` reads: 20 % of its queries fail with 500 from then on).

Measured: the time from the first failure to the rollback decision (the ``ROLLOUT_ROLLED_BACK``
event) and to the last query the candidate answered, the failed live queries, and the live
queries sent from the rollout's start to the decision. Targets (issue 21): rolled back within
one evaluation interval + 5 s, with fewer than ``max_error_rate`` x requests + 10 failed live
queries.

Run: ``python bench/rollout.py [--threads 6] [--evaluation-seconds 10] [--step-seconds 60]
[--healthy 15] [--out bench/RESULTS.md]`` (about a minute and a half).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import (
    ADMIN_TOKEN,
    HEADERS,
    PeerFailed,
    Running,
    header,
    load_average,
    machine,
    publish,
    serve_modelport,
    source,
    versions,
    wait_deployed,
)

MODEL = "bench-canary"
ENDPOINT = "canary"
#: The candidate's rule once it starts failing: raise for rows whose x is above this.
FAIL_ABOVE = 0.8

CODE = """
import json
from pathlib import Path

import pandas as pd
import mlflow
from mlflow.pyfunc import PythonModel

CONTROL = Path({control!r})


class Canary(PythonModel):
    def predict(self, context, model_input, params=None):
        try:
            rule = json.loads(CONTROL.read_text())
        except (OSError, ValueError):
            rule = {{}}
        xs = [float(v) for v in model_input["x"]]
        above = rule.get("fail_above")
        if above is not None and any(v > above for v in xs):
            raise ValueError(f"x above {{above}}")
        return pd.DataFrame({{"label": [int(v > 0.5) for v in xs]}})


mlflow.models.set_model(Canary())
"""


def register(base: str, workdir: Path) -> dict[int, Path]:
    """Versions 1 and 2 of :data:`MODEL`, each reading its own control file; the files."""
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(base)
    controls = {}
    for version in (1, 2):
        control = workdir / f"v{version}.json"
        control.write_text("{}")
        code = workdir / f"canary_v{version}.py"
        code.write_text(CODE.format(control=str(control)))
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                registered_model_name=MODEL,
                input_example=pd.DataFrame({"x": [0.25]}),
                pip_requirements=["pandas"],
            )
        controls[version] = control
    return controls


def entity(version: int) -> dict[str, Any]:
    return {
        "name": f"v{version}",
        "entity_name": MODEL,
        "entity_version": str(version),
        "workload_size": "Small",
        "scale_to_zero_enabled": False,
    }


@dataclass
class Sent:
    at: float
    status: int
    served: str | None


@dataclass
class Clients:
    """Closed-loop client threads querying the endpoint until stopped."""

    url: str
    threads: int
    sent: list[Sent] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(random.Random(i),), daemon=True)
            worker.start()
            self._workers.append(worker)

    def _run(self, rng: random.Random) -> None:
        with httpx.Client(headers=HEADERS, timeout=30) as client:
            while not self.stop.is_set():
                body = {"dataframe_records": [{"x": rng.random()}]}
                try:
                    r = client.post(self.url, json=body)
                    self.sent.append(Sent(time.time(), r.status_code, r.headers.get("served-model-name")))
                except httpx.HTTPError:
                    self.sent.append(Sent(time.time(), 599, None))

    def join(self) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=60)


def rollout(client: httpx.Client) -> dict[str, Any]:
    r = client.get(f"/api/2.0/serving-endpoints/{ENDPOINT}/rollouts/current")
    if r.status_code != 200:
        raise PeerFailed(f"rollout: {r.status_code} {r.text[:300]}")
    return dict(r.json())


def wait_for(client: httpx.Client, states: set[str], limit: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = rollout(client)
        if found["state"] in states:
            return found
        time.sleep(0.2)
    raise PeerFailed(f"rollout not in {states} after {limit} s: {json.dumps(rollout(client))[:600]}")


def run(args: argparse.Namespace, running: Running, controls: dict[int, Path]) -> dict[str, Any]:
    policy = {
        "steps": [5, 25, 50, 100],
        "step_seconds": args.step_seconds,
        "evaluation_seconds": args.evaluation_seconds,
        "max_error_rate": 0.01,
        "max_p99_ms": 200,
        "min_requests_per_step": 200,
    }
    config = {
        "served_entities": [entity(1), entity(2)],
        "traffic_config": {
            "routes": [
                {"served_entity_name": "v2", "traffic_percentage": 100},
                {"served_entity_name": "v1", "traffic_percentage": 0},
            ]
        },
        "rollout": policy,
    }
    clients = Clients(f"{running.url}/serving-endpoints/{ENDPOINT}/invocations", args.threads)
    with httpx.Client(base_url=running.url, headers=HEADERS, timeout=60) as client:
        clients.start()
        try:
            time.sleep(2)
            r = client.put(f"/api/2.0/serving-endpoints/{ENDPOINT}/config", json=config)
            if r.status_code != 200:
                raise PeerFailed(f"update: {r.status_code} {r.text[:500]}")
            started = wait_for(client, {"RUNNING"}, 300)
            print(
                f"rollout running at {started['percentage']:g}%; healthy for {args.healthy:g} s", flush=True
            )
            time.sleep(args.healthy)
            healthy_state = rollout(client)
            failing_at = time.time()
            controls[2].write_text(json.dumps({"fail_above": FAIL_ABOVE}))
            print("the candidate fails 20 % of its queries from now on", flush=True)
            done = wait_for(client, {"ROLLED_BACK", "SUCCEEDED", "CANCELED", "FAILED"}, 120)
            time.sleep(3)  # queries after the decision: none may reach the candidate
        finally:
            clients.join()
            controls[2].write_text("{}")
        events = client.get(
            f"/api/2.0/serving-endpoints/{ENDPOINT}/events", params={"kind": "ROLLOUT_ROLLED_BACK"}
        ).json()["events"]
    decided = events[0]["timestamp"] / 1000 if events else None
    begun = started["step_started_timestamp"] / 1000
    sent = clients.sent
    failures = [s for s in sent if s.status != 200]
    first_failure = min((s.at for s in failures if s.at >= failing_at), default=None)
    candidate = [s.at for s in sent if s.served == "v2" or (s.status != 200 and s.at >= failing_at)]
    exposed = [s for s in sent if begun <= s.at <= (decided or time.time())]
    return {
        "policy": policy,
        "healthy_state": healthy_state,
        "state": done["state"],
        "message": done.get("message"),
        "evaluation": done.get("last_evaluation"),
        "failing_at": failing_at,
        "first_failure": first_failure,
        "decided": decided,
        "last_candidate": max(candidate, default=None),
        "failed": len(failures),
        "failed_statuses": sorted({s.status for s in failures}),
        "exposed": len(exposed),
        "total": len(sent),
        "late": sum(1 for s in sent if decided is not None and s.at > decided + 1 and s.served == "v2"),
        "rps": len(sent) / max(1e-9, sent[-1].at - sent[0].at) if sent else 0.0,
    }


def report(found: dict[str, Any], evaluation_seconds: float) -> str:
    rows = []
    start = found["first_failure"] or found["failing_at"]
    to_decision = found["decided"] - start if found["decided"] else None
    to_last = found["last_candidate"] - start if found["last_candidate"] else None
    allowed = 0.01 * found["exposed"] + 10
    rows.append("| measure | value |")
    rows.append("|---|---:|")
    rows.append(f"| rollout state | {found['state']} |")
    rows.append(
        f"| step when the candidate started failing | {found['healthy_state']['step'] + 1} "
        f"({found['healthy_state']['percentage']:g} %) |"
    )
    rows.append(f"| live req/s (all threads) | {found['rps']:.0f} |")
    shown = f"{to_decision:.1f} s" if to_decision is not None else "never"
    rows.append(f"| first failure → rollback decision | {shown} |")
    shown = f"{to_last:.1f} s" if to_last is not None else "-"
    rows.append(f"| first failure → last query the candidate answered | {shown} |")
    rows.append(f"| failed live queries | {found['failed']} (statuses {found['failed_statuses']}) |")
    rows.append(f"| live queries from the rollout's start to the decision | {found['exposed']} |")
    rows.append(f"| max_error_rate x those + 10 | {allowed:.1f} |")
    rows.append(f"| queries served by the candidate > 1 s after the decision | {found['late']} |")
    measured = (found["evaluation"] or {}).get("candidate") or {}
    rows.append(
        f"| measured at the decision (candidate) | {measured.get('requests')} requests, "
        f"{measured.get('errors')} errors |"
    )
    reason = (found["evaluation"] or {}).get("reason", "")
    time_ok = to_decision is not None and to_decision <= evaluation_seconds + 5
    count_ok = found["failed"] < allowed
    verdict = (
        f"\nTargets: rolled back within one evaluation interval + 5 s ({evaluation_seconds + 5:g} s): "
        f"{'met' if time_ok else 'MISSED'} ({shown if to_decision is None else f'{to_decision:.1f} s'}); "
        f"fewer than max_error_rate x requests + 10 failed live queries ({allowed:.1f}): "
        f"{'met' if count_ok else 'MISSED'} ({found['failed']}).\n\nThe decision: {reason}\n"
    )
    return "\n".join(rows) + "\n" + verdict


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=int, default=6, help="closed-loop client threads (default %(default)s)"
    )
    parser.add_argument("--evaluation-seconds", type=int, default=10, help="default %(default)s")
    parser.add_argument("--step-seconds", type=int, default=60, help="default %(default)s")
    parser.add_argument(
        "--healthy",
        type=float,
        default=15.0,
        help="seconds the rollout runs healthy first (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="append a dated section to this markdown file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = machine()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        running = serve_modelport(Path(tmp) / "data", system_endpoints=False)
        try:
            controls = register(running.url, Path(tmp))
            with httpx.Client(base_url=running.url, headers=HEADERS, timeout=60) as client:
                r = client.post(
                    "/api/2.0/serving-endpoints",
                    json={"name": ENDPOINT, "config": {"served_entities": [entity(1)]}},
                )
                if r.status_code != 200:
                    raise PeerFailed(f"create: {r.status_code} {r.text[:500]}")
            wait_deployed(running.url, ENDPOINT)
            found = run(args, running, controls)
        finally:
            running.stop()
    tables = report(found, float(args.evaluation_seconds))
    items = [
        f"Machine: {host}; at the end {load_average()}",
        f"Versions: {versions('modelport', 'uvicorn', 'mlflow')}; modelport from {source()}",
        f"Load: {args.threads} closed-loop client threads (httpx), 1-row queries, x uniform in [0, 1); "
        f"policy `{json.dumps(found['policy'])}`; the candidate (v2) healthy for {args.healthy:g} s of "
        f"the rollout, then raising for x > {FAIL_ABOVE} (20 % of its queries answer 500); "
        f"{time.monotonic() - began:.0f} s in all",
    ]
    publish(header("canary rollback (issue 21)", items, "rollout.py", argv), tables, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
