"""External-model proxies: modelport, MLflow's AI gateway and LiteLLM's proxy in front of one provider.

The provider is the loopback OpenAI fake (``peers/openai_fake.py``: the app of
``tests/fakes/openai_server.py``) in its own process. The same chat request goes to it
directly and through each proxy, and one load generator (``loadgen.py``: wrk when
installed) drives every target at concurrency 1, 8 and 64. What a proxy costs is its
*added* latency (its p50 and p99 minus the direct p50 and p99 of the same cell) and how
many requests a second it gets through.

Peers (``--peers``); each configuration starts a fresh fake of its own next to it:

- ``direct``: the fake alone, ``POST /v1/chat/completions``;
- ``modelport``: ``modelport serve`` with an ``openai`` external-model endpoint, through
  ``/serving-endpoints/chat/invocations`` and the OpenAI-compatible
  ``/serving-endpoints/chat/completions``;
- ``mlflow``: MLflow's AI gateway in both of its forms: the standalone ``mlflow gateway
  start`` (YAML config; deprecated in MLflow 3 but shipped) and its replacement inside
  ``mlflow server`` (endpoints in the tracking database); each through its invocations
  route and its OpenAI-compatible route;
- ``litellm``: LiteLLM's proxy (``litellm --config``), from a virtual environment of its
  own under ``bench/.venvs/`` that is built on first use, since its pins (openai 2.x,
  gunicorn 23) clash with ours.

Rounds are interleaved as in ``custom_model.py``: in every round each configuration is
started, measured on every cell and stopped, in an order that rotates from round to round;
the tables show the median over rounds. Only one configuration runs at a time.

Run: ``python bench/external_proxy.py [--quick] [--peers direct,modelport,mlflow,litellm]
[--rounds 3] [--out bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import (
    CHAT,
    Median,
    PeerFailed,
    header,
    install_wrk,
    load_average,
    machine,
    median_of,
    one_line,
    publish,
    rotated,
    source,
    versions,
)
from loadgen import CellResult, Load, driver_name, run_cell
from proxy_peers import FAMILIES, Context, Peer, Target, all_peers, litellm_python

# -- rounds ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    targets: dict[str, Target] = field(default_factory=dict)  # in the order of the first round
    cells: dict[tuple[str, int], list[CellResult]] = field(default_factory=dict)
    startups: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def run_rounds(
    ctx: Context, peers: list[Peer], concurrencies: list[int], args: argparse.Namespace
) -> Outcome:
    out = Outcome()
    for round_no in range(args.rounds):
        for peer in rotated(peers, round_no):
            if peer.name in out.failures:
                continue  # failed once: don't spend every round's start-up on it again
            print(f"[round {round_no + 1}/{args.rounds}] {peer.name}: starting", flush=True)
            try:
                started = peer.start(ctx)
            except (PeerFailed, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
                out.failures[peer.name] = str(exc).strip()
                print(f"  FAILED: {str(exc).strip()[:2000]}", flush=True)
                continue
            out.startups.setdefault(peer.name, []).append(started.startup_s)
            print(
                f"  first answer after {started.startup_s:.2f} s, idle {started.settle_s:.1f} s later",
                flush=True,
            )
            try:
                for target in rotated(started.targets, round_no):
                    out.targets.setdefault(target.name, target)
                    for conc in rotated(concurrencies, round_no):
                        load = Load(
                            target.url,
                            target.body,
                            target.headers,
                            conc,
                            duration=args.duration,
                            warmup=args.warmup,
                        )
                        result = run_cell(load, args.driver)
                        out.cells.setdefault((target.name, conc), []).append(result)
                        print(
                            f"  {target.name:<62} c={conc:<3} {result.rps:>9,.0f} req/s  "
                            f"p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms  "
                            f"errors {result.errors}",
                            flush=True,
                        )
            except Exception as exc:  # a peer that breaks mid-round is reported, not fatal
                out.failures[peer.name] = f"failed while measuring: {exc!r}"
                print(f"  FAILED: {exc!r}", flush=True)
            finally:
                started.stop()
    return out


# -- report ------------------------------------------------------------------------------------


class Table:
    """The medians of an :class:`Outcome`, looked up by target or by (family, route)."""

    def __init__(self, out: Outcome) -> None:
        self.out = out
        self.medians = {key: median_of(results) for key, results in out.cells.items()}

    def get(self, name: str, conc: int) -> Median | None:
        return self.medians.get((name, conc))

    def names(self, family: str, route: str) -> list[str]:
        return [t.name for t in self.out.targets.values() if t.family == family and t.route == route]

    def best(self, family: str, route: str, conc: int) -> Median | None:
        found = [m for name in self.names(family, route) if (m := self.get(name, conc))]
        return max(found, key=lambda m: m.rps) if found else None

    def direct(self, conc: int) -> Median | None:
        return self.best("direct", "direct", conc)

    def modelport_for(self, route: str, conc: int) -> Median | None:
        return self.best("modelport", "openai" if route == "direct" else route, conc)

    def peak(self, family: str, route: str, concurrencies: list[int]) -> Median | None:
        found = [m for c in concurrencies if (m := self.best(family, route, c))]
        return max(found, key=lambda m: m.rps) if found else None


def _ratio(a: Median | None, b: Median | None) -> str:
    if a is None or b is None or not b.rps:
        return "n/a"
    return f"{a.rps / b.rps:,.2f}x"


def _added(m: Median, direct: Median | None, attr: str) -> str:
    if direct is None:
        return ""
    return f"{getattr(m, attr) - getattr(direct, attr):+.2f}"


ROUTES = (("invocations", "/invocations"), ("openai", "OpenAI chat completions"))


def report(out: Outcome, concurrencies: list[int]) -> str:
    table = Table(out)
    lines = ["### Per target (median over rounds)", ""]
    lines += [
        "`added` = the target's p50 (p99) minus the direct p50 (p99) of the same cell; "
        "`modelport ÷` = modelport's req/s on the same kind of route (its OpenAI route for "
        "`direct`) over the target's.",
        "",
        "| conc | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors | modelport ÷ |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conc in concurrencies:
        direct = table.direct(conc)
        for target in out.targets.values():
            m = table.get(target.name, conc)
            if m is None:
                continue
            base = None if target.family == "direct" else direct
            added = f"{_added(m, base, 'p50_ms')} | {_added(m, base, 'p99_ms')}"
            lines.append(
                f"| {conc} | {target.name} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {added} | "
                f"{m.errors} | {_ratio(table.modelport_for(target.route, conc), m)} |"
            )
    lines += ["", "### modelport ÷ the best configuration of each peer (req/s, same kind of route)", ""]
    lines += ["| route | conc | modelport req/s | ÷ MLflow AI gateway | ÷ LiteLLM proxy | ÷ direct |"]
    lines += ["|---|---|---:|---:|---:|---:|"]
    for route, label in ROUTES:
        for conc in [*concurrencies, None]:  # None: the peak, each at its best concurrency

            def pick(family: str, route: str, conc: int | None = conc) -> Median | None:
                if conc is None:
                    return table.peak(family, route, concurrencies)
                return table.best(family, route, conc)

            mp = pick("modelport", route)
            if mp is None:
                continue
            lines.append(
                f"| {label} | {conc or 'peak'} | {mp.rps:,.0f} | {_ratio(mp, pick('mlflow', route))} | "
                f"{_ratio(mp, pick('litellm', route))} | {_ratio(mp, pick('direct', 'direct'))} |"
            )
    workers_rows = []
    for route, label in ROUTES:
        for conc in [*concurrencies, None]:
            one = (
                table.peak("modelport", route, concurrencies)
                if conc is None
                else table.best("modelport", route, conc)
            )
            many = (
                table.peak("modelport-workers", route, concurrencies)
                if conc is None
                else table.best("modelport-workers", route, conc)
            )
            if one and many:
                workers_rows.append(
                    f"| {label} | {conc or 'peak'} | {one.rps:,.0f} | {many.rps:,.0f} | {_ratio(many, one)} |"
                )
    if workers_rows:
        lines += ["", "### `--workers` ÷ one process (req/s; target: peak ≥ 1.3x)", ""]
        lines += ["| route | conc | 1 process | workers | ÷ |", "|---|---|---:|---:|---:|", *workers_rows]
    lines += ["", "### Start-up to first answer (median over rounds)", ""]
    lines += ["| configuration | seconds |", "|---|---:|"]
    for name, secs in out.startups.items():
        lines.append(f"| {name} | {statistics.median(secs):.2f} |")
    lines += ["", *targets(table, concurrencies)]
    if out.failures:
        lines += ["", "### Failed", ""]
        lines += [f"- **{name}**: {one_line(why)}" for name, why in out.failures.items()]
    return "\n".join(lines) + "\n"


def targets(table: Table, concurrencies: list[int]) -> list[str]:
    """The issue's targets for modelport, on each of its two routes."""
    rows: list[tuple[str, str, bool]] = []
    for route, label in ROUTES:
        for conc, attr, limit in ((1, "p50_ms", 1.0), (1, "p99_ms", 3.0), (64, "p99_ms", 20.0)):
            mp, direct = table.best("modelport", route, conc), table.direct(conc)
            if mp and direct:
                added = getattr(mp, attr) - getattr(direct, attr)
                what = f"{label}: added {attr[:3]} ≤ {limit:g} ms at c={conc}"
                rows.append((what, f"{added:+.2f} ms", added <= limit))
        mp_peak = table.peak("modelport", route, concurrencies)
        for family, need, name in (
            ("mlflow", 5.0, "MLflow's AI gateway"),
            ("litellm", 40.0, "LiteLLM's proxy"),
        ):
            other = table.peak(family, route, concurrencies)
            if mp_peak and other and other.rps:
                ratio = mp_peak.rps / other.rps
                what = f"{label}: peak req/s ≥ {need:g}x {name} (best configuration)"
                rows.append((what, f"{ratio:,.2f}x ({mp_peak.rps:,.0f} vs {other.rps:,.0f})", ratio >= need))
    if not rows:
        return []
    lines = ["### modelport's targets (peak = best concurrency of each)", ""]
    lines += ["| target | measured | met |", "|---|---:|:---:|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in rows]
    return lines


def all_versions(ctx: Context) -> str:
    found = [v for v in [versions("modelport", "mlflow", "uvicorn", "httpx")] if v]
    if ctx.litellm_python is not None:
        probe = "import importlib.metadata as m; print(m.version('litellm'))"
        cmd = [str(ctx.litellm_python), "-c", probe]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            found.append(f"litellm {done.stdout.strip()} (own venv)")
    return ", ".join(found)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="modelport vs MLflow's AI gateway and LiteLLM's proxy in front of a loopback OpenAI fake."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 2 s cells, concurrency 1 and 64"
    )
    parser.add_argument("--peers", default=",".join(FAMILIES), help="comma-separated subset of %(default)s")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="measured seconds per cell (default %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per cell (default %(default)s)"
    )
    parser.add_argument(
        "--concurrency", default="1,8,64", help="closed-loop connections (default %(default)s)"
    )
    parser.add_argument("--driver", choices=["auto", "wrk", "python"], default="auto", help="load generator")
    parser.add_argument(
        "--out", type=Path, help="append a dated section with the tables to this markdown file"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.concurrency = 1, 2.0, "1,64"
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {','.join(FAMILIES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    peers = [p for p in all_peers() if p.group in args.peers]
    if "mlflow" in args.peers and importlib.util.find_spec("slowapi") is None:
        print(
            "note: MLflow's gateway extra is not installed (pip install -e '.[bench]'); "
            "skipping `mlflow gateway start`",
            flush=True,
        )
        peers = [p for p in peers if not p.name.startswith("mlflow gateway start")]
    litellm = litellm_python() if "litellm" in args.peers else None
    if litellm is None:
        peers = [p for p in peers if p.group != "litellm"]
    if args.driver == "auto":
        install_wrk()
    driver = driver_name(args.driver)
    print(
        f"load generator: {driver}; {len(concurrencies)} concurrencies x {len(peers)} configurations "
        f"x {args.rounds} rounds",
        flush=True,
    )
    host = machine()  # before the run: the load average is the machine's, not ours
    with tempfile.TemporaryDirectory(prefix="bench-external-") as tmp:
        ctx = Context(Path(tmp), litellm)
        out = run_rounds(ctx, peers, concurrencies, args)
        tables = report(out, concurrencies)
        items = [
            f"Machine: {host}; at the end {load_average()}",
            f"Versions: {all_versions(ctx)}; modelport from {source()}",
            f"Load generator: {driver}, closed loop, {args.warmup:g} s warm-up + {args.duration:g} s "
            f"per cell, {args.rounds} interleaved round(s); the loopback OpenAI fake as provider, "
            f"a fresh one per configuration; chat body `{json.dumps(CHAT)}`",
        ]
    publish(header("external-model proxies", items, "external_proxy.py", argv), tables, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
