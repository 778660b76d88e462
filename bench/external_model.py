"""What modelport adds in front of an external model: latency through it vs. straight to the provider.

The provider is the loopback OpenAI fake (``tests/fakes/openai_server.py``) in its own
process; modelport serves an ``openai`` endpoint (chat) and one for embeddings pointed at it.
Each cell is measured with ``bench/loadgen.py`` (wrk when installed), for three targets,
in interleaved rounds so that drift on a shared machine hits all of them alike:

- ``direct``: ``POST {fake}/v1/chat/completions`` (what a client calling the provider pays);
- ``invocations``: ``POST /serving-endpoints/{name}/invocations``;
- ``openai-route``: ``POST /serving-endpoints/chat/completions`` (the OpenAI-compatible route).

The number that matters is ``added p50`` = target p50 - direct p50 (goal: ≤ 1 ms at concurrency 1).

    python bench/external_model.py                 # 3 rounds, 3 s cells, concurrency 1 and 8
    python bench/external_model.py --rounds 1 --duration 2 --concurrency 1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import Load, driver_name, run_cell
from tests.fakes.openai_server import API_KEY
from tests.serverproc import ADMIN_TOKEN, ServerProcess, free_port

CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32}
EMBED = {"input": ["the quick brown fox jumps over the lazy dog"]}


def start_fake() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(
                f"{url}/v1/embeddings",
                json={"model": "m", "input": "x"},
                headers={"authorization": f"Bearer {API_KEY}"},
            )
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the fake OpenAI server did not start")


def create_endpoint(server: ServerProcess, name: str, task: str, fake: str) -> None:
    ext = {
        "provider": "openai",
        "name": "gpt-4o-mini" if task.endswith("chat") else "text-embedding-3-small",
        "task": task,
        "openai_config": {"openai_api_key_plaintext": API_KEY, "openai_api_base": f"{fake}/v1"},
    }
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"name": name, "config": {"served_entities": [{"name": name, "external_model": ext}]}}
    created = httpx.post(f"{server.url}/api/2.0/serving-endpoints", json=body, headers=headers, timeout=30)
    created.raise_for_status()
    while (
        httpx.get(f"{server.url}/api/2.0/serving-endpoints/{name}", headers=headers).json()["state"][
            "config_update"
        ]
        == "IN_PROGRESS"
    ):
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--driver", default="auto", choices=["auto", "wrk", "python"])
    args = parser.parse_args()

    fake_proc, fake = start_fake()
    server = ServerProcess(
        Path(tempfile.mkdtemp(prefix="bench-external-")), extra_args=["--log-level", "warning"]
    )
    try:
        server.start()
        create_endpoint(server, "chat", "llm/v1/chat", fake)
        create_endpoint(server, "embed", "llm/v1/embeddings", fake)
        ours = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        theirs = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        cells = {
            ("chat", "direct"): (f"{fake}/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"}, theirs),
            ("chat", "invocations"): (f"{server.url}/serving-endpoints/chat/invocations", CHAT, ours),
            ("chat", "openai-route"): (
                f"{server.url}/serving-endpoints/chat/completions",
                {**CHAT, "model": "chat"},
                ours,
            ),
            ("embeddings", "direct"): (f"{fake}/v1/embeddings", {**EMBED, "model": "e"}, theirs),
            ("embeddings", "invocations"): (f"{server.url}/serving-endpoints/embed/invocations", EMBED, ours),
        }
        p50: dict[tuple[str, str, int], list[float]] = {}
        for _ in range(args.rounds):
            for conc in args.concurrency:
                for key, (url, body, headers) in cells.items():
                    load = Load(
                        url, json.dumps(body).encode(), headers, conc, duration=args.duration, warmup=0.5
                    )
                    result = run_cell(load, args.driver)
                    assert result.errors == 0, (key, result)
                    p50.setdefault((*key, conc), []).append(result.p50_ms)
        rounds = f"{args.rounds} round(s) of {args.duration:g} s cells"
        print(f"driver: {driver_name(args.driver)}, {rounds}; median of rounds\n")
        print("| body | concurrency | target | p50 ms | added p50 ms |")
        print("|---|---|---|---|---|")
        for (body_name, target, conc), values in sorted(
            p50.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1] != "direct")
        ):
            median = statistics.median(values)
            direct = statistics.median(p50[(body_name, "direct", conc)])
            added = "" if target == "direct" else f"{median - direct:+.3f}"
            print(f"| {body_name} | {conc} | {target} | {median:.3f} | {added} |")
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()
        fake_proc.send_signal(signal.SIGTERM)
        fake_proc.wait(10)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
