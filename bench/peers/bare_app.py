"""The in-process reference: a raw ASGI app that calls the MLflow model in its own process.

It does what any server of a ``dataframe_split`` query must do (parse the JSON, build the
DataFrame, call the pyfunc model with its signature enforced, render the predictions) and
nothing else: no auth, no routing, no inter-process hop. modelport's target is 70% of it.
The model directory comes from ``BENCH_MODEL_PATH``.
Run: ``BENCH_MODEL_PATH=... uvicorn bare_app:app --app-dir bench/peers --loop uvloop --http httptools``.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow.pyfunc
import numpy as np
import orjson
import pandas as pd

_HEADERS = [(b"content-type", b"application/json")]
_model = mlflow.pyfunc.load_model(os.environ["BENCH_MODEL_PATH"])


def predict(body: bytes) -> bytes:
    split = orjson.loads(body)["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    out = _model.predict(frame)
    if isinstance(out, pd.DataFrame | pd.Series):
        out = out.to_numpy()
    return orjson.dumps({"predictions": np.asarray(out).tolist()})


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    try:
        status, body = 200, predict(await _read_body(receive))
    except Exception as exc:  # report, don't crash the benchmark
        status, body = 400, orjson.dumps({"error_code": "BAD_REQUEST", "message": str(exc)})
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})
