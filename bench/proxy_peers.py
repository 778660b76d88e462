"""The configurations that ``external_proxy.py`` measures: how each proxy is started and set up.

Each configuration starts a fresh loopback OpenAI fake (``peers/openai_fake.py``) and the
proxy in front of it, waits for a first answer on every route it will be measured on, and
hands back :class:`Started`: the :class:`Target` URLs with their bodies and headers, and
the processes to stop. Every proxy listens on 127.0.0.1 and is set up as its own docs
advise for throughput; the docstring of each ``build_*`` says how and why.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import (
    BENCH,
    FAKE_OPENAI_KEY,
    PY,
    UPSTREAM_MODEL,
    PeerFailed,
    Running,
    chat_body,
    first_answer,
    free_port,
    launch,
    peer_venv,
    serve_modelport,
    start_openai_fake,
    wait_deployed,
    wait_get,
    wait_idle,
)

__all__ = ["FAMILIES", "Context", "Peer", "Started", "Target", "all_peers", "litellm_python"]

CPUS = len(os.sched_getaffinity(0))
FAMILIES = ("direct", "modelport", "modelport-workers", "mlflow", "litellm")
#: Redis for ``--workers`` (modelport needs it with more than one worker, for rate limits).
REDIS = os.environ.get("MODELPORT_BENCH_REDIS", "redis://127.0.0.1:6379/0")
ENDPOINT = "chat"  # the route's name at every proxy (and the OpenAI routes' `model`)
LITELLM_KEY = "sk-bench-litellm-master-key"
# The newest LiteLLM whose proxy extra resolves from the package index here. Without
# opentelemetry-sdk, LiteLLM 1.106 retries a failing import of its OTel module on every
# authenticated request (compiling it each time, about 70% of a worker's time), which
# would measure the install rather than the proxy.
LITELLM_SPEC = ("litellm[proxy]==1.106.2", "opentelemetry-sdk==1.45.2")
LITELLM_VENV = BENCH / ".venvs" / "litellm"


# -- targets and peers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One URL to measure. ``route`` pairs it with modelport's route of the same kind:
    ``invocations`` (MLflow-style), ``openai`` (OpenAI chat completions) or ``direct``."""

    name: str
    family: str
    route: str
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Started:
    """A started configuration: its targets, and its processes (the fake first)."""

    targets: list[Target]
    procs: list[Running]
    startup_s: float  # process start to the first answer on every route
    settle_s: float = 0.0  # then, until it was idle

    def stop(self) -> None:
        for running in reversed(self.procs):
            running.stop()


@dataclass(frozen=True)
class Context:
    workdir: Path
    litellm_python: Path | None


@dataclass(frozen=True)
class Peer:
    """One server configuration; ``group`` is what ``--peers`` selects."""

    name: str
    group: str
    start: Callable[[Context], Started]


def start_fake(ctx: Context) -> tuple[Running, Target]:
    fake = start_openai_fake(ctx.workdir)
    target = Target(
        "direct (the fake)", "direct", "direct", fake.url, chat_body(UPSTREAM_MODEL), fake.headers
    )
    return fake, target


Build = Callable[[Context, str], tuple[list[Target], Running]]


def with_fake(build: Build) -> Callable[[Context], Started]:
    """A peer's start: a fresh fake, then the proxy ``build`` starts in front of its ``/v1``,
    then a wait until the proxy is idle (see :func:`wait_idle`)."""

    def start(ctx: Context) -> Started:
        fake, direct = start_fake(ctx)
        try:
            targets, proxy = build(ctx, direct.url.removesuffix("/chat/completions"))
        except BaseException:
            fake.stop()
            raise
        try:
            settled = wait_idle(proxy)
        except BaseException:
            proxy.stop()
            fake.stop()
            raise
        return Started(targets, [fake, proxy], proxy.startup_s, settled)

    return start


def start_direct(ctx: Context) -> Started:
    fake, direct = start_fake(ctx)
    return Started([direct], [fake], fake.startup_s)


def first_answers(running: Running, targets: list[Target], limit: float = 120) -> None:
    for target in targets:
        first_answer(running.proc, target.url, target.body, target.headers, running.log, limit)


def build_modelport(ctx: Context, upstream: str, workers: int = 1) -> tuple[list[Target], Running]:
    """``modelport serve`` as it ships (one process; log level warning as in custom_model.py),
    or with ``--workers N`` (and the Redis it needs then), one ``openai`` endpoint whose inline
    key becomes a secret."""
    data = Path(tempfile.mkdtemp(prefix="mp-", dir=ctx.workdir))
    started = time.monotonic()
    extra = ["--workers", str(workers), "--redis", REDIS] if workers > 1 else []
    running = serve_modelport(data, extra=extra)
    base, headers = running.url, running.headers
    family, suffix = ("modelport-workers", f" ({workers} workers)") if workers > 1 else ("modelport", "")
    targets = [
        Target(
            f"modelport{suffix} /invocations",
            family,
            "invocations",
            f"{base}/serving-endpoints/{ENDPOINT}/invocations",
            chat_body(None),
            headers,
        ),
        Target(
            f"modelport{suffix} OpenAI route",
            family,
            "openai",
            f"{base}/serving-endpoints/chat/completions",
            chat_body(ENDPOINT),
            headers,
        ),
    ]
    running.url = targets[0].url
    try:
        external = {
            "provider": "openai",
            "name": UPSTREAM_MODEL,
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key_plaintext": FAKE_OPENAI_KEY, "openai_api_base": upstream},
        }
        entity = {"name": "gpt", "external_model": external}
        body = {"name": ENDPOINT, "config": {"served_entities": [entity]}}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            answer = client.post("/api/2.0/serving-endpoints", json=body)
        if answer.status_code != 200:
            raise PeerFailed(f"creating the endpoint: {answer.status_code} {answer.text[:500]}")
        wait_deployed(base, ENDPOINT, limit=60)
        first_answers(running, targets)
    except BaseException:
        running.stop()
        raise
    running.startup_s = time.monotonic() - started
    return targets, running


MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def build_mlflow_gateway(ctx: Context, upstream: str) -> tuple[list[Target], Running]:
    """``mlflow gateway start``: gunicorn with uvicorn workers, one per CPU (its only
    throughput knob; the default is 2). Gunicorn keeps no access log by default."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    folder = Path(tempfile.mkdtemp(prefix="mlflow-gateway-", dir=ctx.workdir))  # it watches the folder
    config = folder / "config.yaml"
    endpoint = {
        "name": ENDPOINT,
        "endpoint_type": "llm/v1/chat",
        "model": {
            "provider": "openai",
            "name": UPSTREAM_MODEL,
            "config": {"openai_api_key": FAKE_OPENAI_KEY, "openai_api_base": upstream},
        },
    }
    config.write_text(json.dumps({"endpoints": [endpoint]}, indent=2))  # JSON is YAML
    targets = [
        Target(
            "MLflow AI gateway (gateway start) /invocations",
            "mlflow",
            "invocations",
            f"{base}/endpoints/{ENDPOINT}/invocations",
            chat_body(None),
            {},
        ),
        Target(
            "MLflow AI gateway (gateway start) /v1/chat/completions",
            "mlflow",
            "openai",
            f"{base}/v1/chat/completions",
            chat_body(ENDPOINT),
            {},
        ),
    ]
    log = folder / "gateway.log"
    cmd = [PY, "-m", "mlflow", "gateway", "start", "--config-path", str(config)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(CPUS)]
    started = time.monotonic()
    proc = launch(cmd, log, MLFLOW_ENV)
    running = Running(targets[0].url, {}, 0.0, proc, log, f"\0never\0mlflow-gateway-{port}")
    try:
        first_answers(running, targets)
    except BaseException:
        running.stop()
        raise
    running.startup_s = time.monotonic() - started
    return targets, running


def build_mlflow_server(ctx: Context, upstream: str) -> tuple[list[Target], Running]:
    """The AI gateway inside ``mlflow server`` (SQLite store): one uvicorn worker per CPU,
    access log off, usage tracking (a trace per request) off, the job runner off.

    The secret, model definition and endpoint are created through its REST API, as its UI
    does. Its upstream guard refuses plain-HTTP and private addresses unless allowed, and
    the worker health check gets 120 s: on a busy 2-core machine a worker's start can take
    longer than uvicorn's default 5 s, and the supervisor then restarts it again and again.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    folder = Path(tempfile.mkdtemp(prefix="mlflow-server-", dir=ctx.workdir))
    log = folder / "server.log"
    env = {
        **MLFLOW_ENV,
        "MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_CRYPTO_KEK_PASSPHRASE": "bench-kek-passphrase",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    cmd = [PY, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(CPUS)]
    cmd += ["--backend-store-uri", f"sqlite:///{folder}/mlflow.db"]
    cmd += ["--default-artifact-root", str(folder / "artifacts")]
    cmd += ["--uvicorn-opts", "--no-access-log --timeout-worker-healthcheck 120"]
    targets = [
        Target(
            "MLflow AI gateway (mlflow server) /invocations",
            "mlflow",
            "invocations",
            f"{base}/gateway/{ENDPOINT}/mlflow/invocations",
            chat_body(None),
            {},
        ),
        Target(
            "MLflow AI gateway (mlflow server) /openai/v1/chat/completions",
            "mlflow",
            "openai",
            f"{base}/gateway/openai/v1/chat/completions",
            chat_body(ENDPOINT),
            {},
        ),
    ]
    started = time.monotonic()
    proc = launch(cmd, log, env)
    running = Running(targets[0].url, {}, 0.0, proc, log, str(folder))
    try:
        wait_get(proc, f"{base}/health", log, limit=180)
        api = f"{base}/api/3.0/mlflow/gateway"
        with httpx.Client(timeout=60) as client:

            def post(path: str, body: dict[str, object]) -> dict[str, object]:
                answer = client.post(f"{api}/{path}", json=body)
                if answer.status_code != 200:
                    raise PeerFailed(f"POST {path}: {answer.status_code} {answer.text[:500]}")
                return dict(answer.json())

            secret = post(
                "secrets/create",
                {
                    "secret_name": "fake-openai",
                    "secret_value": {"api_key": FAKE_OPENAI_KEY},
                    "provider": "openai",
                    "auth_config": {"api_base": upstream},
                },
            )["secret"]
            assert isinstance(secret, dict)
            definition = post(
                "model-definitions/create",
                {
                    "name": "fake-gpt",
                    "secret_id": secret["secret_id"],
                    "provider": "openai",
                    "model_name": UPSTREAM_MODEL,
                },
            )["model_definition"]
            assert isinstance(definition, dict)
            link = {"model_definition_id": definition["model_definition_id"], "linkage_type": "PRIMARY"}
            post("endpoints/create", {"name": ENDPOINT, "model_configs": [link], "usage_tracking": False})
        first_answers(running, targets)
    except BaseException:
        running.stop()
        raise
    running.startup_s = time.monotonic() - started
    return targets, running


def build_litellm(ctx: Context, upstream: str) -> tuple[list[Target], Running]:
    """LiteLLM's proxy as its production checklist has it, less what needs a database:
    a master key, no database (so no spend or error logs), ``set_verbose`` off,
    ``LITELLM_LOG=ERROR`` (which also silences uvicorn's access log), one uvicorn worker
    per CPU, and the worker health check at 120 s (see :func:`build_mlflow_server`)."""
    assert ctx.litellm_python is not None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    folder = Path(tempfile.mkdtemp(prefix="litellm-", dir=ctx.workdir))
    config = folder / "config.yaml"
    model = {
        "model_name": ENDPOINT,
        "litellm_params": {
            "model": f"openai/{UPSTREAM_MODEL}",
            "api_base": upstream,
            "api_key": FAKE_OPENAI_KEY,
        },
    }
    settings = {
        "model_list": [model],
        "litellm_settings": {"set_verbose": False, "request_timeout": 600},
        "general_settings": {
            "master_key": LITELLM_KEY,
            "disable_spend_logs": True,
            "disable_error_logs": True,
        },
    }
    config.write_text(json.dumps(settings, indent=2))
    target = Target(
        "LiteLLM proxy /v1/chat/completions",
        "litellm",
        "openai",
        f"{base}/v1/chat/completions",
        chat_body(ENDPOINT),
        {"Authorization": f"Bearer {LITELLM_KEY}"},
    )
    log = folder / "litellm.log"
    cmd = [str(ctx.litellm_python.parent / "litellm"), "--config", str(config)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", str(CPUS)]
    cmd += ["--timeout_worker_healthcheck", "120"]
    env = {
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",  # no .env loading
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at start
    }
    started = time.monotonic()
    proc = launch(cmd, log, env)
    running = Running(target.url, target.headers, 0.0, proc, log, str(folder))
    try:
        first_answers(running, [target], limit=180)
    except BaseException:
        running.stop()
        raise
    running.startup_s = time.monotonic() - started
    return [target], running


def all_peers() -> list[Peer]:
    return [
        Peer("direct", "direct", start_direct),
        Peer("modelport", "modelport", with_fake(build_modelport)),
        Peer(
            f"modelport ({CPUS} workers)",
            "modelport-workers",
            with_fake(lambda ctx, upstream: build_modelport(ctx, upstream, workers=CPUS)),
        ),
        Peer(f"mlflow gateway start ({CPUS} workers)", "mlflow", with_fake(build_mlflow_gateway)),
        Peer(f"mlflow server AI gateway ({CPUS} workers)", "mlflow", with_fake(build_mlflow_server)),
        Peer(f"litellm proxy ({CPUS} workers)", "litellm", with_fake(build_litellm)),
    ]


def litellm_python() -> Path | None:
    """The Python of LiteLLM's own environment, built when missing."""
    return peer_venv(LITELLM_VENV, LITELLM_SPEC, "LiteLLM")
