"""Bulk jobs on tables (``modelport batch run``) on a real server: a custom model (the tiny
sklearn classifier) scoring a Parquet file, a CSV file and a Delta table; an external chat
endpoint (the OpenAI fake) answering one text column, some rows failing; the errors of bad
requests; Ctrl-C on the CLI and a re-run that resumes; a server killed with -9 mid-job that
resumes on restart, every row id in the output exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from tests.batch.world import CHAT, MODEL, World
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.providers import create_external, custom_chat_entity

JOBS = "/api/2.0/modelport/batch/jobs"
FEATURES = ["f0", "f1", "f2", "f3"]


def _cli(server: ServerProcess, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOST": server.url, "MODELPORT_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _features(n: int) -> pa.Table:
    return pa.table(
        {name: [((i * 7 + k * 3) % 10) / 10 for i in range(n)] for k, name in enumerate(FEATURES)}
    )


def _predictions(admin: httpx.Client, rows: pa.Table) -> list[Any]:
    split = {"columns": rows.column_names, "data": [list(r.values()) for r in rows.to_pylist()]}
    r = admin.post(f"/serving-endpoints/{MODEL}/invocations", json={"dataframe_split": split})
    assert r.status_code == 200, r.text
    return list(r.json()["predictions"])


def _output(world: World, name: str) -> list[dict[str, Any]]:
    rows = DeltaTable(str(world.tables.joinpath(*name.split(".")))).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: r["row_id"])


def _wait(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"{JOBS}/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return dict(job)
        assert time.monotonic() < deadline, f"job still {job['status']}"
        time.sleep(0.1)


def _upload(client: httpx.Client, name: str, content: bytes) -> str:
    r = client.post(
        "/serving-endpoints/files", files={"file": (name, content)}, data={"purpose": "user_data"}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_a_parquet_file_is_scored_by_the_cli_row_by_row(world: World, tmp_path: Path) -> None:
    rows = _features(50)
    path = tmp_path / "flowers.parquet"
    pq.write_table(rows, path)
    done = _cli(
        world.server,
        "-o",
        "json",
        "batch",
        "run",
        "--endpoint",
        MODEL,
        "--input",
        str(path),
        "--output",
        "main.scored.flowers",
        "--chunk-rows",
        "16",
    )
    assert done.returncode == 0, done.stderr
    job = orjson.loads(done.stdout)
    assert (job["status"], job["rows"]) == ("completed", {"total": 50, "done": 50, "failed": 0})
    assert job["input"]["format"] == "parquet" and job["input"]["fingerprint"].startswith("sha256:")
    out = _output(world, "main.scored.flowers")
    assert [r["row_id"] for r in out] == list(range(50))
    assert [r["result"] for r in out] == _predictions(world.admin, rows)
    assert [[r[f] for f in FEATURES] for r in out] == [list(r.values()) for r in rows.to_pylist()]
    assert all(r["errorMessage"] is None for r in out)

    # The same input and output again: the job that scored it, nothing sent (a new upload of the
    # same content is dropped).
    upload = _upload(world.admin, "flowers.parquet", path.read_bytes())
    again = world.admin.post(
        JOBS, json={"endpoint": MODEL, "input": {"file_id": upload}, "output_table": "main.scored.flowers"}
    )
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["action"]) == (job["id"], "done")
    assert world.admin.get(f"/serving-endpoints/files/{upload}").status_code == 404
    assert len(_output(world, "main.scored.flowers")) == 50


def test_a_csv_file_and_a_delta_table_are_scored(world: World) -> None:
    rows = _features(30)
    csv = "\n".join([",".join(FEATURES), *(",".join(str(v) for v in r.values()) for r in rows.to_pylist())])
    file_id = _upload(world.admin, "flowers.csv", csv.encode())
    write_deltalake(str(world.tables / "main" / "inputs" / "flowers"), rows)
    expected = _predictions(world.admin, rows)
    for source, output in (
        ({"file_id": file_id}, "main.scored.from_csv"),
        ({"table": "main.inputs.flowers"}, "main.scored.from_delta"),
    ):
        r = world.admin.post(JOBS, json={"endpoint": MODEL, "input": source, "output_table": output})
        assert r.status_code == 200, r.text
        assert r.json()["action"] == "created"
        job = _wait(world.admin, r.json()["id"])
        assert job["status"] == "completed", job
        assert [row["result"] for row in _output(world, output)] == expected
    assert job["input"] == {
        "format": "delta",
        "name": "main.inputs.flowers",
        "file_id": None,
        "version": 0,
        "fingerprint": "delta:main.inputs.flowers@0",
    }


def test_a_chat_endpoint_answers_one_text_column_and_failures_are_summarised(
    world: World, tmp_path: Path
) -> None:
    world.fake.reset()
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"id": i, "text": f"review {i}"}) + b"\n" for i in range(12)))
    world.fake.faults.fail(400, "this prompt is refused", times=2)
    done = _cli(
        world.server,
        "batch",
        "run",
        "--endpoint",
        CHAT,
        "--input",
        str(path),
        "--output",
        "main.scored.reviews",
        "--column",
        "text",
    )
    assert done.returncode == 0, done.stderr
    assert "10 answered, 2 failed" in done.stdout
    assert "2  " in done.stdout and "this prompt is refused" in done.stdout
    out = _output(world, "main.scored.reviews")
    assert [r["row_id"] for r in out] == list(range(12)) and [r["id"] for r in out] == list(range(12))
    failed = [r for r in out if r["errorMessage"] is not None]
    assert len(failed) == 2 and all(r["result"] is None for r in failed)
    assert all(r["result"] == f"You said: review {r['id']}" for r in out if r["errorMessage"] is None)
    sent = [orjson.loads(rec.body) for rec in world.fake.requests]
    assert all(s["messages"][0]["content"].startswith("review ") for s in sent)

    # Usage rows name the job.
    job_id = world.admin.get(JOBS).json()["jobs"][0]["id"]
    r = world.admin.post(
        "/api/2.0/modelport/tables/query",
        json={
            "sql": "SELECT count(*) FROM system.serving.endpoint_usage"
            f" WHERE usage_context['batch_job_id'] = '{job_id}'"
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["rows"][0][0] >= 10


def test_bad_requests_answer_an_error_code(world: World) -> None:
    table = {"table": "main.inputs.flowers"}

    def create(client: httpx.Client, body: dict[str, Any]) -> tuple[int, str, str]:
        r = client.post(
            JOBS, json={"endpoint": MODEL, "input": table, "output_table": "main.scored.bad", **body}
        )
        return r.status_code, r.json().get("error_code", ""), r.json().get("message", "")

    assert create(world.admin, {"endpoint": "no-such-endpoint"})[:2] == (404, "RESOURCE_DOES_NOT_EXIST")
    assert create(world.alice, {})[:2] == (403, "PERMISSION_DENIED")  # no CAN_QUERY
    assert create(world.admin, {"input": {"table": "main.inputs.nothing"}})[:2] == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    status, code, message = create(world.admin, {"columns": ["f0", "nope"]})
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "'nope'" in message
    assert create(world.admin, {"endpoint": CHAT})[:2] == (400, "INVALID_PARAMETER_VALUE")  # one text column
    broken = _upload(world.admin, "broken.parquet", b"not parquet at all")
    status, code, message = create(world.admin, {"input": {"file_id": broken}})
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "broken.parquet" in message
    status, code, message = create(world.admin, {"output_table": "main.scored.flowers"})  # another input's
    assert (status, code) == (409, "RESOURCE_ALREADY_EXISTS") and "another output table" in message
    assert create(world.admin, {"output_table": "system.serving.x"})[:2] == (400, "INVALID_PARAMETER_VALUE")
    assert world.alice.get(f"{JOBS}/{world.admin.get(JOBS).json()['jobs'][0]['id']}").status_code == 404


def test_ctrl_c_cancels_the_job_and_the_same_command_resumes_it(world: World, tmp_path: Path) -> None:
    world.fake.reset()
    n = 240
    path = tmp_path / "prompts.csv"
    path.write_text("text\n" + "\n".join(f"prompt {i}" for i in range(n)) + "\n")
    args = [
        "batch",
        "run",
        "--endpoint",
        CHAT,
        "--input",
        str(path),
        "--output",
        "main.scored.prompts",
        "--chunk-rows",
        "16",
    ]
    env = {**os.environ, "MODELPORT_HOST": world.server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    world.fake.faults.delay = 0.05
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelport", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            jobs = [
                j for j in world.admin.get(JOBS).json()["jobs"] if j["output_table"] == "main.scored.prompts"
            ]
            if jobs and jobs[0]["rows"]["done"] >= 32:
                break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Run the same command again to resume" in err
        job = world.admin.get(f"{JOBS}/{jobs[0]['id']}").json()
        assert job["status"] == "cancelled" and job["rows"]["done"] < n, job
        kept = len(_output(world, "main.scored.prompts"))
        assert kept == job["rows"]["done"]
    finally:
        world.fake.faults.delay = 0
    world.fake.reset()
    again = _cli(world.server, *args)
    assert again.returncode == 0, again.stderr
    assert f"Resuming batch job {job['id']}" in again.stderr
    out_rows = _output(world, "main.scored.prompts")
    assert [r["row_id"] for r in out_rows] == list(range(n))  # each once
    assert all(r["result"] == f"You said: {r['text']}" for r in out_rows)
    assert len(world.fake.requests) == n - kept  # the answered rows were not sent again


def test_a_server_killed_mid_job_resumes_it_on_restart(tmp_path: Path) -> None:
    """kill -9 of the leader mid-job; restarted on the same data directory it goes on from the
    output table's rows: every row id exactly once."""
    fake = FakeOpenAI().start()
    # /health, not /ready: nothing here needs the model registry loaded.
    proc = ServerProcess(tmp_path / "data").start_until("/health")
    n = 400
    fake.faults.delay = 0.05
    try:
        with httpx.Client(
            base_url=proc.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        ) as http:
            create_external(http, "kept", custom_chat_entity(fake.url)["external_model"])
            lines = b"".join(orjson.dumps({"text": f"line {i}"}) + b"\n" for i in range(n))
            body = {
                "endpoint": "kept",
                "input": {"file_id": _upload(http, "lines.jsonl", lines)},
                "output_table": "main.out.lines",
                "chunk_rows": 16,
            }
            job = http.post(JOBS, json=body).json()
            deadline = time.monotonic() + 60
            while (done := http.get(f"{JOBS}/{job['id']}").json()["rows"]["done"]) < n // 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        proc.kill()
        assert done < n, "the job ended before the kill"
        proc.start_until("/health")
        with httpx.Client(
            base_url=proc.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        ) as http:
            ended = _wait(http, job["id"])
        assert ended["status"] == "completed" and ended["rows"] == {"total": n, "done": n, "failed": 0}, ended
        assert ended["runs"] == 2
        rows = (
            DeltaTable(str(tmp_path / "data" / "tables" / "main" / "out" / "lines"))
            .to_pyarrow_table()
            .to_pylist()
        )
        assert sorted(r["row_id"] for r in rows) == list(range(n))
        assert all(r["result"] == f"You said: {r['text']}" for r in rows)
    finally:
        fake.faults.delay = 0
        proc.kill()  # no clean stop needed: it would wait for the registry still loading
        fake.stop()
