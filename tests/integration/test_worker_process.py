"""The replica process for real: ``python -m modelport.runtime.worker`` on a unix socket."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from modelport.runtime import protocol

COLUMNS = [f"x{i}" for i in range(5)]
REPO = Path(__file__).resolve().parents[2]


class FrameClient:
    """One connection to a worker; many requests in flight, matched by request id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, path: str) -> FrameClient:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    async def _read(self) -> None:
        while True:
            request_id, kind, payload = await protocol.read_frame(self.reader)
            self.pending.pop(request_id).set_result((kind, payload))

    def send(self, kind: int, payload: bytes = b"") -> asyncio.Future[tuple[int, bytes]]:
        request_id = next(self.ids)
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = fut
        self.writer.write(protocol.encode(request_id, kind, payload))
        return fut

    async def call(self, kind: int, payload: bytes = b"") -> tuple[int, Any]:
        kind, body = await asyncio.wait_for(self.send(kind, payload), 60)
        return kind, orjson.loads(body)

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()


class WorkerProcess:
    """A worker started on a fresh socket; fails fast if it exits while starting."""

    def __init__(self, model_path: Path, *args: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mpw-", dir="/tmp"))  # short: socket paths are limited
        self.socket = str(self.dir / "w.sock")
        self.stderr_path = self.dir / "stderr.log"
        self.args = [
            sys.executable, "-m", "modelport.runtime.worker",
            "--socket", self.socket, "--model-path", str(model_path), *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> WorkerProcess:
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdin=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"worker did not listen within {timeout}s:\n{self.stderr()}")
            time.sleep(0.05)
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("worker-models")
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((200, 5)), columns=COLUMNS)
    clf = LogisticRegression().fit(x, (x["x0"] + x["x1"] > 1).astype(int))
    signature = mlflow.models.infer_signature(x, clf.predict(x))
    mlflow.sklearn.save_model(
        clf, str(root / "sklearn"), signature=signature, pip_requirements=["scikit-learn"]
    )
    code = root / "sleepy.py"
    code.write_text(
        textwrap.dedent(
            """
            import time

            import mlflow


            class Sleepy(mlflow.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    time.sleep(1.0)
                    return [len(model_input)]


            mlflow.models.set_model(Sleepy())
            """
        )
    )
    mlflow.pyfunc.save_model(str(root / "sleepy"), python_model=str(code), pip_requirements=["mlflow"])
    (root / "broken").mkdir()
    (root / "broken" / "MLmodel").write_text("flavors: {python_function: {loader_module: no.such.module}}\n")
    return {"root": root, "clf": clf, "x": x}


@pytest.fixture(scope="module")
def sklearn_worker(models: dict[str, Any]) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(models["root"] / "sklearn").start()
    yield worker
    worker.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_ping_answers_pong_with_stats(sklearn_worker: WorkerProcess) -> None:
    async def go() -> tuple[int, Any]:
        client = await FrameClient.connect(sklearn_worker.socket)
        try:
            return await client.call(protocol.PING)
        finally:
            await client.close()

    kind, stats = run(go())
    assert kind == protocol.PONG
    assert set(stats) == {
        "pid",
        "in_flight",
        "requests",
        "batches",
        "batched_rows",
        "max_batch_seen",
        "protocol",
    }
    assert stats["protocol"] == protocol.VERSION
    assert sklearn_worker.proc is not None and stats["pid"] == sklearn_worker.proc.pid
    assert "modelport-worker: loaded python_function, sklearn in " in sklearn_worker.stderr()


def _bodies(x: pd.DataFrame) -> dict[str, Any]:
    head = x.head(3)
    return {
        "dataframe_split": {"dataframe_split": head.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": head.to_dict(orient="records")},
        "instances": {"instances": head.to_dict(orient="records")},
        "inputs": {"inputs": head.to_dict(orient="list")},
    }


@pytest.mark.parametrize("family", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_predict_each_input_family(
    sklearn_worker: WorkerProcess, models: dict[str, Any], family: str
) -> None:
    async def go() -> tuple[int, Any]:
        client = await FrameClient.connect(sklearn_worker.socket)
        try:
            return await client.call(protocol.PREDICT, orjson.dumps(_bodies(models["x"])[family]))
        finally:
            await client.close()

    kind, answer = run(go())
    assert kind == protocol.OK
    assert answer == {"predictions": models["clf"].predict(models["x"].head(3)).tolist()}


@pytest.mark.parametrize(
    ("payload", "kind", "code", "text"),
    [
        (b'{"dataframe_split": {"columns": ["x0", "x1", "x2", "x3", "oops"], "data": [[1, 2, 3, 4, 5]]}}',
         protocol.CLIENT_ERROR, "INVALID_PARAMETER_VALUE", "missing inputs ['x4']"),
        (b'{"dataframe_records": [{"x0": "a", "x1": 1, "x2": 1, "x3": 1, "x4": 1}]}',
         protocol.CLIENT_ERROR, "INVALID_PARAMETER_VALUE", "column x0"),
        (b"not json", protocol.CLIENT_ERROR, "MALFORMED_REQUEST", "not valid JSON"),
        (b"[1]", protocol.CLIENT_ERROR, "MALFORMED_REQUEST", "JSON object"),
        (b'{"instances": [], "inputs": []}', protocol.CLIENT_ERROR, "BAD_REQUEST", "found instances, inputs"),
    ],
    ids=["missing-column", "bad-type", "malformed", "not-an-object", "two-families"],
)  # fmt: skip
def test_bad_requests_are_client_errors(
    sklearn_worker: WorkerProcess, payload: bytes, kind: int, code: str, text: str
) -> None:
    async def go() -> list[tuple[int, Any]]:
        client = await FrameClient.connect(sklearn_worker.socket)
        try:
            answer = await client.call(protocol.PREDICT, payload)
            return [answer, await client.call(protocol.PING)]  # still serving
        finally:
            await client.close()

    (got_kind, body), (pong, _) = run(go())
    assert (got_kind, body["error_code"], pong) == (kind, code, protocol.PONG)
    assert text in body["message"]


def test_concurrent_one_row_requests_are_batched(
    sklearn_worker: WorkerProcess, models: dict[str, Any]
) -> None:
    x = models["x"].head(64)

    async def go() -> tuple[list[tuple[int, bytes]], Any]:
        client = await FrameClient.connect(sklearn_worker.socket)
        try:
            futures = [
                client.send(
                    protocol.PREDICT, orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": [row]}})
                )
                for row in x.to_numpy().tolist()
            ]
            answers = await asyncio.wait_for(asyncio.gather(*futures), 60)
            _, stats = await client.call(protocol.PING)
            return answers, stats
        finally:
            await client.close()

    answers, stats = run(go())
    assert [kind for kind, _ in answers] == [protocol.OK] * 64
    assert [orjson.loads(body)["predictions"][0] for _, body in answers] == models["clf"].predict(x).tolist()
    assert stats["max_batch_seen"] > 1 and stats["batches"] >= 1
    assert stats["in_flight"] == 0


def test_sigterm_finishes_the_request_in_flight_and_exits_0(models: dict[str, Any]) -> None:
    worker = WorkerProcess(models["root"] / "sleepy").start()
    try:

        async def go() -> tuple[int, Any]:
            client = await FrameClient.connect(worker.socket)
            try:
                pending = client.send(protocol.PREDICT, b'{"instances": [[1], [2]]}')
                while (await client.call(protocol.PING))[1]["in_flight"] < 1:
                    await asyncio.sleep(0.01)
                assert worker.proc is not None
                worker.proc.send_signal(signal.SIGTERM)
                kind, body = await asyncio.wait_for(pending, 30)
                return kind, orjson.loads(body)
            finally:
                await client.close()

        assert run(go()) == (protocol.OK, {"predictions": [2]})
        assert worker.proc is not None and worker.proc.wait(timeout=30) == 0
        assert not os.path.exists(worker.socket)
    finally:
        worker.stop()


def test_a_model_that_fails_to_load_exits_3_with_the_error_on_stderr(models: dict[str, Any]) -> None:
    worker = WorkerProcess(models["root"] / "broken")
    try:
        done = subprocess.run(worker.args, cwd=REPO, capture_output=True, timeout=180)
        assert done.returncode == 3
        assert b"Traceback" in done.stderr
        assert b"ModuleNotFoundError: No module named 'no'" in done.stderr
        assert not os.path.exists(worker.socket)
    finally:
        worker.stop()
