"""Ray Serve peer: the MLflow model behind a Ray Serve deployment on 127.0.0.1:PORT.

Configured the way Ray Serve's docs advise for throughput on one small node: the
high-throughput mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` and ``RAY_SERVE_ENABLE_HA_PROXY=1``,
set by the harness), access logs off, a fixed number of replicas sized to the CPUs, and
with ``--batched`` the dynamic-batching variant (``@serve.batch``, ``max_ongoing_requests``
at least the batch size). Stops on SIGTERM, shutting Serve down (and the Ray cluster it
started, when it started one).

With ``--address`` it joins a running cluster (``custom_model.py`` starts one with
``ray start --head``, the same way for Ray Serve and for ``modelport serve --backend ray``);
that cluster's processes, not this driver, must then have the ``RAY_SERVE_*`` variables.
Without it, ``ray.init`` starts a local cluster of its own in ``--temp-dir``.

Run: ``python bench/peers/ray_app.py --model-path DIR --port P [--batched] [--replicas N]
[--address HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from typing import Any

import mlflow.pyfunc
import numpy as np
import orjson
import pandas as pd
import ray
from ray import serve

# Ray Serve hands HTTP deployments a Starlette request and sends back Starlette responses.
from starlette.requests import Request  # noqa: TID251
from starlette.responses import Response  # noqa: TID251

_QUIET = {"enable_access_log": False, "log_level": "WARNING"}
#: The object store of the cluster this app starts; ``custom_model.py`` gives its own the same.
OBJECT_STORE_BYTES = 256 * 1024 * 1024


def _frame(body: bytes) -> pd.DataFrame:
    split = orjson.loads(body)["dataframe_split"]
    return pd.DataFrame(split["data"], columns=split["columns"])


def _rows(out: Any) -> list[Any]:
    if isinstance(out, pd.DataFrame | pd.Series):
        out = out.to_numpy()
    return np.asarray(out).tolist()


def _json(value: Any) -> Response:
    return Response(orjson.dumps({"predictions": value}), media_type="application/json")


class Model:
    def __init__(self, model_path: str) -> None:
        self.model = mlflow.pyfunc.load_model(model_path)

    async def __call__(self, request: Request) -> Response:
        return _json(_rows(self.model.predict(_frame(await request.body()))))


class BatchedModel:
    def __init__(self, model_path: str, max_batch_size: int, wait_s: float) -> None:
        self.model = mlflow.pyfunc.load_model(model_path)
        self.predict_batch.set_max_batch_size(max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(wait_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def predict_batch(self, frames: list[pd.DataFrame]) -> list[list[Any]]:
        rows = _rows(self.model.predict(pd.concat(frames, ignore_index=True)))
        answers, start = [], 0
        for frame in frames:
            answers.append(rows[start : start + len(frame)])
            start += len(frame)
        return answers

    async def __call__(self, request: Request) -> Response:
        return _json(await self.predict_batch(_frame(await request.body())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--batched", action="store_true")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--temp-dir", help="Ray's temp dir (default: a new /tmp/rb-*)")
    parser.add_argument("--address", help="join the Ray cluster at HOST:PORT instead of starting one")
    args = parser.parse_args()

    if args.address:
        ray.init(address=args.address, log_to_driver=False, configure_logging=False)
        where = f"cluster {args.address}"
    else:
        # A short, private temp dir: Ray puts unix sockets there (108-byte path limit), and the
        # harness finds and ends every process of this cluster by it.
        temp_dir = args.temp_dir or tempfile.mkdtemp(prefix="rb-", dir="/tmp")
        ray.init(
            num_cpus=os.cpu_count() or 2,
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            _temp_dir=temp_dir,
            log_to_driver=False,
            configure_logging=False,
        )
        where = f"temp dir {temp_dir}"
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    if args.batched:
        deployment = serve.deployment(
            BatchedModel,
            num_replicas=args.replicas,
            max_ongoing_requests=max(64, args.max_batch_size),
            logging_config=_QUIET,
        ).bind(args.model_path, args.max_batch_size, args.batch_wait_ms / 1000)
    else:
        deployment = serve.deployment(Model, num_replicas=args.replicas, logging_config=_QUIET).bind(
            args.model_path
        )
    serve.run(deployment, name="bench", route_prefix="/")
    print(f"ray serve ready on 127.0.0.1:{args.port} ({where})", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
