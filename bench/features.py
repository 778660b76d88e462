"""Feature serving (issue 18): what a lookup in the embedded online store adds to a custom-model
query, and how long publishing a feature table of 1 million rows takes.

Set-up, through the public routes as a user would do it: one ``modelport serve`` (batching as
shipped, ``auto``) gets a feature table ``main.bench_features.customers`` of ``--rows`` rows (an
int64 key ``customer_id`` and 10 float64 features: ``online_store.py``'s table), written with
``FeatureEngineeringClient.create_table`` and published to its embedded online store. A Ridge
regression on the 10 features is trained on a training set built from that table
(``create_training_set`` + ``load_df``) and registered twice:

- ``A`` (key only): logged with ``FeatureEngineeringClient.log_model`` and a ``FeatureLookup`` on
  the table; the request carries only ``customer_id`` and the replica looks the 10 features up
  in the online store (``modelport/features/mlflow_model.py``);
- ``B`` (features in the request): the same model object logged plainly with ``mlflow.sklearn``;
  the request carries the 10 features of that same customer.

Both are served by endpoints of the same server and answer the same number (checked before every
cell: a regression's output shows a wrong lookup). Feature models are MLflow ``python_function``
models only, so the replica does not batch them (``entities/custom.py`` ``BATCH_FLAVORS``) while
``B`` (sklearn) is batched. To say how much of a throughput gap that explains, two more servers
serve the same models from the same online store file (``--online-store``; they only read it):
one with ``--batching off`` (``A`` and ``B``, both unbatched) and one with ``--batching on``
(``A`` batched: the lookups of a batch go to the store in one query). ``--no-variants`` skips them.

Cells: 1-row ``dataframe_split`` bodies through ``/serving-endpoints/{name}/invocations``, wrk
(``loadgen.py``) at c=1 (latency) and c=64 (throughput). Rounds are interleaved: every round first
republishes the table through ``POST .../publish`` (the publish figure, timed from this client),
then measures every (concurrency, configuration) cell back to back, in an order that rotates from
round to round. Tables show medians over rounds; differences and ratios are medians of per-round
differences and ratios (each pair measured seconds apart, so a shared machine's drift mostly
cancels out).

Also measured in this process, without HTTP: the online store's own publish (Arrow to SQLite,
``OnlineStore.publish``, as ``online_store.py`` does) and ``OnlineReader.lookup`` of 1 key, and the
pyfunc ``predict`` of ``A`` and ``B`` loaded with ``mlflow.pyfunc.load_model`` (what a replica calls).

Feature-spec endpoints against Feast's feature server (issue 18 item 5) are measured by
``bench/feature_spec_serving.py``.

Run: ``python bench/features.py [--quick] [--rounds 3] [--rows 1000000] [--no-variants]
[--out bench/RESULTS.md]`` (``make bench-features``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from harness import (
    ADMIN_TOKEN,
    HEADERS,
    PeerFailed,
    Running,
    cpu_seconds,
    header,
    install_wrk,
    load_average,
    machine,
    median_of,
    publish,
    requirements,
    rotated,
    run_arguments,
    serve_modelport,
    source,
    versions,
    wait_deployed,
    wait_idle,
)
from loadgen import CellResult, Load, driver_name, run_cell
from online_store import FEATURES, build
from online_store import measure as measure_lookups

TABLE = "main.bench_features.customers"
BENCH_TABLE = "main.fs.bench"  # the table online_store.py's lookup measure asks for
KEY = "customer_id"
#: The model's weights (the label is the features times these, plus noise).
WEIGHTS = np.array([1.0, -2.0, 0.5, 0.0, 1.5, -0.7, 0.3, 2.2, -1.1, 0.8])
TOLERANCE = 1e-9  # A and B must answer the same number
#: Distinct customers asked at once of every A endpoint before measuring (batched lookups must
#: give each row its own features).
CONCURRENT_CHECK = 64
PACKAGES = ("modelport", "mlflow", "scikit-learn", "pandas", "pyarrow", "deltalake", "uvicorn")


# -- the model -----------------------------------------------------------------------------------


@dataclass
class Models:
    """The trained model, the training set it came from, the customer every query asks about."""

    model: Any
    training_set: Any
    customer: int
    features: list[float]  # the customer's 10 features, in FEATURES order
    expected: float  # the model's prediction for them
    others: dict[int, float]  # more customers and the model's predictions for them (concurrent check)

    def body(self, kind: str) -> bytes:
        if kind == "feat":
            return orjson.dumps({"dataframe_split": {"columns": [KEY], "data": [[self.customer]]}})
        return orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": [self.features]}})


def train(fe: Any, data: pa.Table, samples: int) -> Models:
    """A Ridge regression trained on a training set joined from the feature table."""
    from sklearn.linear_model import Ridge

    from modelport.features import FeatureLookup

    rows = data.num_rows
    rng = np.random.default_rng(3)
    by_key = data.to_pandas().set_index(KEY)
    keys = rng.choice(rows, size=min(samples, rows), replace=False)
    labels = pd.DataFrame({KEY: keys})
    labels["target"] = by_key.loc[keys, FEATURES].to_numpy() @ WEIGHTS + rng.normal(scale=0.1, size=len(keys))
    training_set = fe.create_training_set(
        labels,
        [FeatureLookup(table_name=TABLE, lookup_key=KEY, feature_names=FEATURES)],
        label="target",
        exclude_columns=[KEY],
    )
    frame = training_set.load_df()
    model = Ridge(alpha=0.1).fit(frame[FEATURES], frame["target"])
    customer = int(rows // 2 + 7)
    features = [float(v) for v in by_key.loc[customer, FEATURES]]
    expected = float(model.predict(pd.DataFrame([features], columns=FEATURES))[0])
    others = [int(k) for k in rng.choice(rows, size=min(CONCURRENT_CHECK, rows), replace=False)]
    predicted = [float(v) for v in model.predict(by_key.loc[others, FEATURES])]
    by_customer = dict(zip(others, predicted, strict=True))
    return Models(model, training_set, customer, features, expected, by_customer)


def register(base: str, models: Models, kinds: list[str], tag: str) -> dict[str, tuple[str, str]]:
    """Log ``A`` ("feat") and/or ``B`` ("plain") into the registry at ``base``; per kind, the
    registered model's name and the logged model's URI."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from modelport.features import FeatureEngineeringClient

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(base)
    found: dict[str, tuple[str, str]] = {}
    x = pd.DataFrame([models.features], columns=FEATURES)
    for kind in kinds:
        name = f"bench-features-{kind}-{tag}"
        with mlflow.start_run():
            if kind == "feat":
                with FeatureEngineeringClient(host=base, token=ADMIN_TOKEN) as fe:
                    info = fe.log_model(
                        models.model,
                        "model",
                        flavor=mlflow.sklearn,
                        training_set=models.training_set,
                        registered_model_name=name,
                        pip_requirements=requirements(),
                    )
            else:
                info = mlflow.sklearn.log_model(
                    models.model,
                    name="model",
                    signature=infer_signature(x, models.model.predict(x)),
                    registered_model_name=name,
                    pip_requirements=requirements(),
                )
        found[kind] = (name, info.model_uri)
    return found


# -- the servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """One ``modelport serve`` (``role``: its ``--batching``) and its endpoints by model kind."""

    role: str
    running: Running
    endpoints: dict[str, str] = field(default_factory=dict)
    model_uris: dict[str, str] = field(default_factory=dict)

    def url(self, kind: str) -> str:
        return f"{self.running.url}/serving-endpoints/{self.endpoints[kind]}/invocations"


def start_server(role: str, workdir: Path, store: Path) -> Server:
    data = Path(tempfile.mkdtemp(prefix=f"mp-features-{role}-", dir=workdir))
    extra = ["--batching", role, "--online-store", str(store)]
    return Server(role, serve_modelport(data, extra=extra, system_endpoints=False))


def deploy(server: Server, models: Models, kinds: list[str], tag: str) -> None:
    """Register ``kinds`` on ``server``, create an endpoint for each, wait until they answer
    right, then until the server is idle."""
    base = server.running.url
    for kind, (name, uri) in register(base, models, kinds, f"{server.role}-{tag}").items():
        endpoint = f"feat-{kind}-{server.role}"
        entity = {"entity_name": name, "entity_version": "1", "workload_size": "Small"}
        answer = httpx.post(
            f"{base}/api/2.0/serving-endpoints",
            json={"name": endpoint, "config": {"served_entities": [entity]}},
            headers=HEADERS,
            timeout=30,
        )
        if answer.status_code != 200:
            raise PeerFailed(f"creating {endpoint}: {answer.status_code} {answer.text[:500]}")
        server.endpoints[kind] = endpoint
        server.model_uris[kind] = uri
    for kind, endpoint in server.endpoints.items():
        wait_deployed(base, endpoint)
        check_answer(server.url(kind), models.body(kind), models.expected, limit=60)
        if kind == "feat":
            check_concurrent(server.url(kind), models)
    wait_idle(server.running)


def check_concurrent(url: str, models: Models) -> None:
    """:data:`CONCURRENT_CHECK` key-only requests for distinct customers at once (a batching
    replica predicts them together): every answer must be its own customer's prediction."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(customer: int) -> tuple[int, float | str]:
        body = orjson.dumps({"dataframe_split": {"columns": [KEY], "data": [[customer]]}})
        answer = httpx.post(
            url, content=body, headers={"Content-Type": "application/json", **HEADERS}, timeout=60
        )
        if answer.status_code != 200:
            return customer, f"{answer.status_code} {answer.text[:200]}"
        return customer, float(answer.json()["predictions"][0])

    for _ in range(3):  # three bursts
        with ThreadPoolExecutor(max_workers=len(models.others)) as pool:
            answers = list(pool.map(ask, models.others))
        wrong = [
            (c, got) for c, got in answers if isinstance(got, str) or abs(got - models.others[c]) > TOLERANCE
        ]
        if wrong:
            raise PeerFailed(
                f"{url}: {len(wrong)} of {len(answers)} concurrent answers wrong, e.g. {wrong[:3]}"
            )


def check_answer(url: str, body: bytes, expected: float, limit: float = 0.0) -> None:
    """A 200 whose one prediction is ``expected`` (retried for ``limit`` seconds while not 200)."""
    deadline = time.monotonic() + limit
    with httpx.Client(timeout=30, headers={"Content-Type": "application/json", **HEADERS}) as client:
        while True:
            answer = client.post(url, content=body)
            if answer.status_code == 200 or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    if answer.status_code != 200:
        raise PeerFailed(f"{url}: {answer.status_code} {answer.text[:500]}")
    got = answer.json().get("predictions")
    if not (isinstance(got, list) and len(got) == 1 and abs(float(got[0]) - expected) <= TOLERANCE):
        raise PeerFailed(f"{url}: expected the prediction [{expected!r}], got {answer.text[:300]}")


# -- configurations and rounds ---------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    key: str
    name: str
    server: str  # the server's --batching
    kind: str  # "feat" (A) or "plain" (B)


A = Config("a", "A: key only, lookup (batching auto)", "auto", "feat")
B = Config("b", "B: 10 features sent (batching auto)", "auto", "plain")
A_OFF = Config("a-off", "A, server --batching off", "off", "feat")
B_OFF = Config("b-off", "B, server --batching off", "off", "plain")
A_ON = Config("a-on", "A, server --batching on", "on", "feat")
CONFIGS = (A, B, A_OFF, B_OFF, A_ON)
CONCS = (1, 64)


@dataclass
class Outcome:
    # (config key, conc) -> {round: result}
    cells: dict[tuple[str, int], dict[int, CellResult]] = field(default_factory=dict)
    # (config key, conc) -> {round: CPU µs of the answering server's processes per request}
    cpu_us: dict[tuple[str, int], dict[int, float]] = field(default_factory=dict)
    publish_s: dict[int, float] = field(default_factory=dict)  # round -> REST publish seconds
    idle_cores: list[float] = field(default_factory=list)  # the servers not asked, CPU over each cell
    failures: list[str] = field(default_factory=list)


def measure(
    servers: dict[str, Server], config: Config, conc: int, models: Models, args: argparse.Namespace
) -> tuple[CellResult, float, float | None]:
    """One cell after a checked answer and a warm-up: wrk's result, the answering server's CPU µs
    per request, and the other servers' CPU over the run (share of one core; None: no others)."""
    server = servers[config.server]
    url, body = server.url(config.kind), models.body(config.kind)
    check_answer(url, body, models.expected)
    if args.warmup > 0:
        run_cell(Load(url, body, HEADERS, conc, duration=args.warmup, warmup=0), args.driver)
    pids = server.running.pids()
    others = set().union(*(s.running.pids() for s in servers.values() if s is not server))
    before, before_others = cpu_seconds(pids), cpu_seconds(others)
    started = time.monotonic()
    result = run_cell(Load(url, body, HEADERS, conc, duration=args.duration, warmup=0), args.driver)
    elapsed = time.monotonic() - started
    used, used_others = cpu_seconds(pids) - before, cpu_seconds(others) - before_others
    cpu = used / result.requests * 1e6 if result.requests else float("nan")
    return result, cpu, (used_others / elapsed if others else None)


def run_rounds(
    servers: dict[str, Server], models: Models, fe: Any, configs: list[Config], args: argparse.Namespace
) -> Outcome:
    out = Outcome()
    main = servers["auto"]
    for round_no in range(args.rounds):
        print(f"[round {round_no + 1}/{args.rounds}] load average {load_average()}", flush=True)
        try:
            started = time.perf_counter()
            state = fe.publish_table(TABLE, mode="snapshot")
            out.publish_s[round_no] = time.perf_counter() - started
            if state.get("rows") != args.rows:
                raise PeerFailed(f"publish answered {state}")
            print(f"  REST publish of {args.rows:,} rows: {out.publish_s[round_no]:.2f} s", flush=True)
            wait_idle(main.running)
        except Exception as exc:
            out.failures.append(f"round {round_no + 1}, publish: {' '.join(str(exc).split())[:800]}")
        for ci, conc in enumerate(rotated(list(CONCS), round_no)):
            for config in rotated(configs, round_no + ci):
                try:
                    result, cpu, idle = measure(servers, config, conc, models, args)
                except (
                    PeerFailed,
                    OSError,
                    httpx.HTTPError,
                    subprocess.SubprocessError,
                    RuntimeError,
                ) as exc:
                    why = " ".join(str(exc).split())[:1500]
                    out.failures.append(f"round {round_no + 1}, c={conc}, {config.name}: {why}")
                    print(f"  FAILED {config.name} c={conc}: {why}", flush=True)
                    continue
                out.cells.setdefault((config.key, conc), {})[round_no] = result
                out.cpu_us.setdefault((config.key, conc), {})[round_no] = cpu
                if idle is not None:
                    out.idle_cores.append(idle)
                print(
                    f"  c={conc:<3} {config.name:<40} {result.rps:8,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  {cpu:6.0f} µs CPU/req",
                    flush=True,
                )
    return out


# -- in this process -----------------------------------------------------------------------------


@dataclass
class InProcess:
    delta_read_s: float = float("nan")
    arrow_publish_s: float = float("nan")
    lookup: dict[str, float] = field(default_factory=dict)  # OnlineReader.lookup of 1 key, ms
    predict: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> p50/p99 µs, CPU µs


def store_work(tables_root: Path, workdir: Path, rows: int, calls: int) -> InProcess:
    """The online store alone: the server's Delta table read back and published into a SQLite file
    of this process (``OnlineStore.publish``: the issue's 1M-row target without HTTP), then
    ``OnlineReader.lookup`` of 1 key with the 10 features named."""
    from modelport.tables.features import FeatureTables
    from modelport.tables.online_store import OnlineReader, OnlineStore

    found = InProcess()
    tables = FeatureTables(str(tables_root))
    info = tables.get(TABLE)
    started = time.perf_counter()
    data = tables.read(TABLE, info.version)
    found.delta_read_s = time.perf_counter() - started
    path = workdir / "in-process" / "features.sqlite"
    store = OnlineStore(path)
    started = time.perf_counter()
    # Under online_store.py's table name, so that its lookup measure reads this copy.
    state = store.publish(dataclasses.replace(info, name=BENCH_TABLE), data, mode="snapshot")
    found.arrow_publish_s = time.perf_counter() - started
    assert state["rows"] == rows, state
    store.close()
    del data
    reader = OnlineReader(path)
    found.lookup = measure_lookups(reader, rows, 1, calls)
    reader.close()
    shutil.rmtree(path.parent, ignore_errors=True)
    return found


def predict_work(server: Server, models: Models, store: Path, calls: int) -> dict[str, dict[str, float]]:
    """The pyfunc ``predict`` of A (key only) and B (features) on 1 row, loaded as a replica loads
    them (``mlflow.pyfunc.load_model``), A reading the server's online store file."""
    import mlflow.pyfunc

    mlflow.set_tracking_uri(server.running.url)
    os.environ["MODELPORT_ONLINE_STORE"] = str(store)
    found: dict[str, dict[str, float]] = {}
    for kind, uri in server.model_uris.items():
        model = mlflow.pyfunc.load_model(uri)
        frame = pd.DataFrame([[models.customer]], columns=[KEY]) if kind == "feat" else None
        if frame is None:
            frame = pd.DataFrame([models.features], columns=FEATURES)
        got = float(np.asarray(model.predict(frame)).ravel()[0])
        if abs(got - models.expected) > TOLERANCE:
            raise PeerFailed(f"in-process {kind}: predicted {got!r}, expected {models.expected!r}")
        for _ in range(max(50, calls // 10)):
            model.predict(frame)
        samples = []
        cpu = time.process_time()
        for _ in range(calls):
            started = time.perf_counter()
            model.predict(frame)
            samples.append((time.perf_counter() - started) * 1e6)
        cpu = (time.process_time() - cpu) / calls * 1e6
        samples.sort()
        found[kind] = {
            "p50": statistics.median(samples),
            "p99": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))],
            "cpu": cpu,
        }
    os.environ.pop("MODELPORT_ONLINE_STORE", None)
    return found


# -- report --------------------------------------------------------------------------------------

Paired = tuple[float, list[float]]


def _median(values: list[float]) -> Paired | None:
    return (statistics.median(values), values) if values else None


def paired_ratio(out: Outcome, mine: Config, base: Config, conc: int = 64) -> Paired | None:
    a, b = out.cells.get((mine.key, conc), {}), out.cells.get((base.key, conc), {})
    return _median([a[r].rps / b[r].rps for r in sorted(a) if r in b and b[r].rps])


def paired_diff(out: Outcome, mine: Config, base: Config, what: str, conc: int = 1) -> Paired | None:
    a, b = out.cells.get((mine.key, conc), {}), out.cells.get((base.key, conc), {})
    return _median([getattr(a[r], what) - getattr(b[r], what) for r in sorted(a) if r in b])


def batching_share(out: Outcome) -> Paired | None:
    """Per round, the share of the c=64 gap (B - A req/s) that B's batching explains (B - B off)."""
    a, b, off = (out.cells.get((c.key, 64), {}) for c in (A, B, B_OFF))
    shares = [
        (b[r].rps - off[r].rps) / (b[r].rps - a[r].rps)
        for r in sorted(a)
        if r in b and r in off and b[r].rps - a[r].rps > 0
    ]
    return _median(shares)


def _rounds(values: list[float], fmt: str) -> str:
    return ", ".join(format(v, fmt) for v in values)


def report(
    out: Outcome, configs: list[Config], work: InProcess, setup: dict[str, float], args: argparse.Namespace
) -> str:
    lines = ["### Per configuration (median over rounds)", ""]
    lines += [
        "`CPU µs/req`: CPU time of the answering server's processes (server and replicas) during the "
        "measured run over the requests wrk counted.",
        "",
        "| conc | configuration | req/s | p50 ms | p99 ms | errors | CPU µs/req |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for conc in CONCS:
        for config in configs:
            results = out.cells.get((config.key, conc))
            if not results:
                continue
            m = median_of(list(results.values()))
            cpu = statistics.median(out.cpu_us[(config.key, conc)].values())
            lines.append(
                f"| {conc} | {config.name} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.errors} "
                f"| {cpu:,.0f} |"
            )
    if out.idle_cores:
        lines += [
            "",
            f"The servers not asked in a cell used {statistics.median(out.idle_cores):.1%} of a core "
            f"during it (median over cells; at most {max(out.idle_cores):.1%}).",
        ]
    lines += ["", "### The lookup's cost (median of per-round differences and ratios)", ""]
    lines += ["| measure | value | by round |", "|---|---:|---|"]
    for label, mine, base, what in (
        ("c=1 p50: A - B (as shipped)", A, B, "p50_ms"),
        ("c=1 p99: A - B (as shipped)", A, B, "p99_ms"),
        ("c=1 p50: A - B, both unbatched (--batching off)", A_OFF, B_OFF, "p50_ms"),
        ("c=1 p99: A - B, both unbatched (--batching off)", A_OFF, B_OFF, "p99_ms"),
        ("c=1 p50: A batched (--batching on) - B (as shipped)", A_ON, B, "p50_ms"),
    ):
        if d := paired_diff(out, mine, base, what):
            lines.append(f"| {label} | {d[0]:+.3f} ms | {_rounds(d[1], '+.3f')} |")
    for label, mine, base in (
        ("c=64 req/s: A ÷ B (as shipped)", A, B),
        ("c=64 req/s: A ÷ B, both unbatched (--batching off)", A_OFF, B_OFF),
        ("c=64 req/s: B ÷ B unbatched (B's batching gain)", B, B_OFF),
        ("c=64 req/s: A ÷ B unbatched", A, B_OFF),
        ("c=64 req/s: A batched (--batching on) ÷ A (as shipped)", A_ON, A),
        ("c=64 req/s: A batched (--batching on) ÷ B (as shipped)", A_ON, B),
    ):
        if r := paired_ratio(out, mine, base):
            lines.append(f"| {label} | {r[0]:.3f} | {_rounds(r[1], '.3f')} |")
    if share := batching_share(out):
        lines.append(
            f"| share of the c=64 gap (B - A) that B's batching explains: (B - B unbatched) ÷ (B - A) "
            f"| {share[0]:.0%} | {_rounds(share[1], '.2f')} |"
        )
    lines += ["", f"### Publishing {args.rows:,} rows (int64 key + 10 float64) to the embedded store", ""]
    lines += ["| step | seconds | by round |", "|---|---:|---|"]
    lines.append(
        f"| Delta write through REST (`create_table` with the data: Arrow IPC in 8 MiB chunks, merges), "
        f"once | {setup['delta_write_s']:.2f} | |"
    )
    if out.publish_s:
        rounds = [out.publish_s[r] for r in sorted(out.publish_s)]
        lines.append(
            f"| `POST .../publish` snapshot (the server reads the Delta version and writes SQLite; "
            f"timed at the client) | {statistics.median(rounds):.2f} | {_rounds(rounds, '.2f')} |"
        )
    lines.append(f"| in this process: Delta read of the table | {work.delta_read_s:.2f} | |")
    lines.append(
        f"| in this process: `OnlineStore.publish` (Arrow -> SQLite, as `online_store.py`) | "
        f"{work.arrow_publish_s:.2f} | |"
    )
    lines += ["", "### In this process, no HTTP (1 row)", ""]
    lines += ["| call | calls | p50 µs | p99 µs | CPU µs/call |", "|---|---:|---:|---:|---:|"]
    if work.lookup:
        lk = work.lookup
        lines.append(
            f"| `OnlineReader.lookup`, 1 key, 10 features | {args.calls} | {lk['p50'] * 1000:.1f} | "
            f"{lk['p99'] * 1000:.1f} | (mean {lk['mean'] * 1000:.1f}) |"
        )
    names = {
        "feat": "A's pyfunc `predict` (key only: lookup + the raw model)",
        "plain": "B's pyfunc `predict`",
    }
    for kind, found in work.predict.items():
        lines.append(
            f"| {names[kind]} | {args.calls} | {found['p50']:.0f} | {found['p99']:.0f} | {found['cpu']:.0f} |"
        )
    lines += ["", *targets(out, work, args)]
    if out.failures:
        lines += ["", "### Failed", ""]
        lines += [f"- {why}" for why in out.failures]
    return "\n".join(lines) + "\n"


def targets(out: Outcome, work: InProcess, args: argparse.Namespace) -> list[str]:
    rows = []
    if d := paired_diff(out, A, B, "p50_ms"):
        rows.append(f"| lookup's added p50 at c=1 ≤ 0.5 ms (A - B) | {d[0]:+.3f} ms | {_met(d[0] <= 0.5)} |")
    if d := paired_diff(out, A, B, "p99_ms"):
        rows.append(f"| lookup's added p99 at c=1 ≤ 2 ms (A - B) | {d[0]:+.3f} ms | {_met(d[0] <= 2.0)} |")
    if r := paired_ratio(out, A, B):
        rows.append(f"| A's req/s at c=64 ≥ 85% of B's | {r[0]:.1%} | {_met(r[0] >= 0.85)} |")
    full = args.rows >= 1_000_000
    size = "1 million" if full else f"{args.rows:,} (a --rows/--quick run: not the target's size)"
    if out.publish_s:
        median = statistics.median(out.publish_s.values())
        met = _met(median <= 30) if full else "n/a"
        rows.append(f"| publish {size} rows ≤ 30 s (REST publish) | {median:.2f} s | {met} |")
    rows.append(
        f"| the same, the store alone (`OnlineStore.publish`) | {work.arrow_publish_s:.2f} s | "
        f"{_met(work.arrow_publish_s <= 30) if full else 'n/a'} |"
    )
    rows.append(
        "| feature-spec endpoint (1 key, 10 features): p99 ≤ 2 ms at c=1, req/s ≥ 3x Feast's feature "
        "server | measured by `bench/feature_spec_serving.py` | — |"
    )
    return ["### Targets (issue 18)", "", "| target | measured | met |", "|---|---:|:---:|", *rows]


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or f"load average {load_average()}"


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="What feature lookup adds to a query; publish time.")
    run_arguments(parser, "1 round, 2 s cells, 100,000 rows")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the feature table (default %(default)s)"
    )
    parser.add_argument(
        "--calls", type=int, default=3000, help="in-process calls per measure (default %(default)s)"
    )
    parser.add_argument(
        "--no-variants", action="store_true", help="skip the --batching off and --batching on servers"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
        if "--rows" not in (argv if argv is not None else sys.argv[1:]):
            args.rows = 100_000
        args.calls = min(args.calls, 1000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_wrk()
    host = machine()  # before the run: the load average is the machine's, not ours
    up_before = uptime()
    print(up_before, flush=True)
    configs = [A, B] if args.no_variants else list(CONFIGS)
    tag = f"{os.getpid()}"
    servers: dict[str, Server] = {}
    setup: dict[str, float] = {}
    from modelport.features import FeatureEngineeringClient

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        workdir = Path(tmp)
        store = workdir / "online" / "features.sqlite"
        fe = None
        try:
            print("starting the server (batching auto)", flush=True)
            servers["auto"] = main_server = start_server("auto", workdir, store)
            fe = FeatureEngineeringClient(host=main_server.running.url, token=ADMIN_TOKEN, timeout=600)
            data = build(args.rows)
            started = time.perf_counter()
            fe.create_table(TABLE, primary_keys=KEY, df=data, description="bench/features.py")
            setup["delta_write_s"] = time.perf_counter() - started
            print(f"feature table written through REST in {setup['delta_write_s']:.2f} s", flush=True)
            state = fe.publish_table(TABLE, mode="snapshot")
            assert state["rows"] == args.rows, state
            models = train(fe, data, samples=5000)
            del data
            print(f"model trained; customer {models.customer} predicts {models.expected:.6f}", flush=True)
            deploy(main_server, models, ["feat", "plain"], tag)
            tables_root = Path(main_server.running.marker) / "tables"
            work = store_work(tables_root, workdir, args.rows, args.calls)
            print(
                f"in-process: Delta read {work.delta_read_s:.2f} s, "
                f"OnlineStore.publish {work.arrow_publish_s:.2f} s, "
                f"lookup p50 {work.lookup['p50'] * 1000:.1f} µs",
                flush=True,
            )
            work.predict = predict_work(main_server, models, store, args.calls)
            for kind, found in work.predict.items():
                print(
                    f"in-process predict {kind}: p50 {found['p50']:.0f} µs, CPU {found['cpu']:.0f} µs",
                    flush=True,
                )
            if not args.no_variants:
                for role, kinds in (("off", ["feat", "plain"]), ("on", ["feat"])):
                    print(f"starting the --batching {role} server", flush=True)
                    servers[role] = start_server(role, workdir, store)
                    deploy(servers[role], models, kinds, tag)
                for server in servers.values():
                    wait_idle(server.running)
            out = run_rounds(servers, models, fe, configs, args)
        finally:
            if fe is not None:
                fe.close()
            for server in servers.values():
                server.running.stop()
    up_after = uptime()
    variants = (
        ""
        if args.no_variants
        else "; two more servers (`--batching off`: A and B; `--batching on`: A) read the same online store "
        "file and stay up during every cell"
    )
    items = [
        f"Machine: {host}",
        f"`uptime` before: {up_before}; after: {up_after}",
        f"Versions: {versions(*PACKAGES)}; modelport from {source()}",
        f"Load generator: {driver_name(args.driver)} (closed loop, one thread), {args.warmup:g} s warm-up + "
        f"{args.duration:g} s per cell, {args.rounds} interleaved round(s); Ridge regression on 10 float "
        f"features, 1-row `dataframe_split` bodies (A: `{models.body('feat').decode()}`; B: the customer's "
        "10 features); "
        f"feature table of {args.rows:,} rows, published snapshot to the embedded (SQLite) store; endpoints "
        f"`workload_size` Small, one server process with batching `auto`{variants}",
    ]
    publish(
        header("feature serving (issue 18)", items, "features.py", argv),
        report(out, configs, work, setup, args),
        args.out,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
