"""``ai_query`` in the SQL route (``POST /api/2.0/modelport/tables/query``), the CLI and the
``modelport.sql`` library, on a real server: a custom model (a tiny sklearn classifier), an
external chat endpoint in front of the OpenAI fake, struct requests, ``returnType``,
``failOnError => false``, ``modelParameters`` refused on a custom model, the caller's CAN_QUERY
and the usage table's ``usage_context``.

The package's server and endpoints (``tests/batch/world.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import duckdb
import httpx
import pytest

from modelport.batch.ai_query import CUSTOM_PARAMETERS_REFUSED, CUSTOM_RESPONSE_FORMAT_REFUSED
from modelport.errors import InvalidParameterValue
from tests.batch.world import CHAT, EMBED, MODEL, World
from tests.serverproc import ADMIN_TOKEN

ROWS = "(VALUES (0.9), (0.1), (NULL)) v(x)"
FEATURES = "named_struct('f0', x, 'f1', 0.0, 'f2', 0.0, 'f3', 0.0)"


def sql(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/api/2.0/modelport/tables/query", json={"sql": text})


def rows(client: httpx.Client, text: str) -> list[list[Any]]:
    r = sql(client, text)
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def test_custom_model_with_a_struct_request_typed_by_its_signature(world: World) -> None:
    got = rows(world.admin, f"SELECT ai_query('{MODEL}', IF(x IS NULL, NULL, {FEATURES})) AS p FROM {ROWS}")
    assert got == [[1], [0], [None]]  # an int64 prediction: BIGINT; a NULL request: NULL


def test_named_arguments_and_return_type(world: World) -> None:
    got = rows(
        world.admin,
        f"SELECT ai_query(endpoint => '{MODEL}', request => {FEATURES}, returnType => 'DOUBLE') AS p"
        f" FROM {ROWS} WHERE x IS NOT NULL",
    )
    assert got == [[1.0], [0.0]]
    assert all(isinstance(r[0], float) for r in got)


def test_model_parameters_are_refused_on_a_custom_model(world: World) -> None:
    r = sql(
        world.admin,
        f"SELECT ai_query('{MODEL}', {FEATURES}, modelParameters => named_struct('max_tokens', 5))"
        f" FROM {ROWS}",
    )
    assert r.status_code == 400, r.text
    assert r.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": CUSTOM_PARAMETERS_REFUSED}


def test_chat_endpoint_one_request_per_row_with_parameters(world: World) -> None:
    world.fake.reset()
    got = rows(
        world.admin,
        f"SELECT x, ai_query('{CHAT}', 'hello ' || x, modelParameters => named_struct('temperature', 0.0))"
        " FROM (VALUES ('a'), ('b'), ('c')) v(x) ORDER BY x",
    )
    assert got == [["a", "You said: hello a"], ["b", "You said: hello b"], ["c", "You said: hello c"]]


def test_fail_on_error_false_marks_only_the_failing_row(world: World) -> None:
    world.fake.reset()
    world.fake.faults.fail(400, "this prompt is refused")
    got = rows(
        world.admin,
        f"SELECT ai_query('{CHAT}', 'hi ' || x, failOnError => false) AS r"
        " FROM (VALUES ('a'), ('b'), ('c')) v(x)",
    )
    answers = [r[0] for r in got]
    failed = [a for a in answers if a["errorMessage"] is not None]
    assert len(failed) == 1 and failed[0]["result"] is None
    assert "this prompt is refused" in failed[0]["errorMessage"]
    assert sorted(a["result"] for a in answers if a["errorMessage"] is None)[0].startswith("You said: hi ")


def test_an_error_fails_the_query_by_default(world: World) -> None:
    world.fake.reset()
    world.fake.faults.fail(400, "this prompt is refused")
    r = sql(world.admin, f"SELECT ai_query('{CHAT}', 'hi')")
    assert r.status_code == 400, r.text
    assert "this prompt is refused" in r.json()["message"]


def test_rate_limited_requests_are_retried(world: World) -> None:
    world.fake.reset()
    world.fake.faults.fail(429, "slow down", times=2, headers={"Retry-After": "0"})
    assert rows(world.admin, f"SELECT ai_query('{CHAT}', 'again')") == [["You said: again"]]


def test_a_caller_without_can_query_is_refused(world: World) -> None:
    r = sql(world.alice, f"SELECT ai_query('{CHAT}', 'hi')")
    assert r.status_code == 403, r.text
    assert r.json()["error_code"] == "PERMISSION_DENIED"


def test_can_view_is_not_enough(world: World) -> None:
    endpoint_id = world.admin.get(f"/api/2.0/serving-endpoints/{CHAT}").json()["id"]
    grant = {"access_control_list": [{"user_name": "alice", "permission_level": "CAN_VIEW"}]}
    r = world.admin.patch(f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=grant)
    assert r.status_code == 200, r.text
    r = sql(world.alice, f"SELECT ai_query('{CHAT}', 'hi', failOnError => false)")
    assert r.status_code == 403, r.text
    assert "CAN_QUERY" in r.json()["message"]


def test_usage_is_recorded_as_ai_query(world: World) -> None:
    rows(world.admin, f"SELECT ai_query('{CHAT}', 'counted')")
    got = rows(
        world.admin,
        "SELECT count(*) FROM system.serving.endpoint_usage"
        f" WHERE usage_context['source'] = 'ai_query' AND endpoint_name = '{CHAT}'",
    )
    assert got[0][0] >= 1


def test_task_functions_ask_the_configured_chat_endpoint(world: World) -> None:
    world.fake.reset()
    got = rows(
        world.admin,
        "SELECT ai_summarize(x, 5), ai_translate(x, 'French'), ai_classify(x, array('a', 'b'))"
        " FROM (VALUES ('the cat sat'), (NULL)) v(x)",
    )
    summary, translation, label = got[0]
    # The fake echoes the prompt: it reached the endpoint through the data plane.
    prompt = "Summarize the following text in at most 5 words. Answer with the summary only. the cat sat"
    assert summary == f"You said: {prompt}"
    assert translation.startswith("You said: Translate the following text to French.")
    assert label is None  # the echo names no label
    assert got[1] == [None, None, None]  # NULL in, NULL out


def test_response_format_reaches_the_provider(world: World) -> None:
    world.fake.reset()
    got = rows(
        world.admin,
        f"SELECT ai_query('{CHAT}', 'hi', responseFormat => '{{\"type\":\"json_object\"}}'),"
        f" ai_query('{CHAT}', 'hi', responseFormat => 'STRUCT<said: STRING>'),"
        f" ai_query('{CHAT}', 'hi', responseFormat => 'text')",
    )
    # The fake answers {"said": <prompt>} when asked for JSON: the format reached it.
    assert got == [['{"said":"hi"}', "hi", "You said: hi"]]
    formats = [
        r.json().get("response_format") for r in world.fake.requests if r.path.endswith("/chat/completions")
    ]
    assert {"type": "json_object"} in formats and {"type": "text"} in formats
    ddl = next(f for f in formats if f and f["type"] == "json_schema")
    assert ddl["json_schema"]["name"] == "said"
    assert ddl["json_schema"]["schema"]["properties"] == {"said": {"type": "string"}}


def test_response_format_refused_on_a_custom_model(world: World) -> None:
    r = sql(world.admin, f"SELECT ai_query('{MODEL}', {FEATURES}, responseFormat => 'text') FROM {ROWS}")
    assert r.status_code == 400, r.text
    assert r.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": CUSTOM_RESPONSE_FORMAT_REFUSED}


def test_ai_extract_and_constrained_labels(world: World) -> None:
    world.fake.reset()
    got = rows(
        world.admin,
        "SELECT ai_extract(x, array('said', 'person')), ai_analyze_sentiment(x)"
        " FROM (VALUES ('Ada is happy'), (NULL)) v(x)",
    )
    extracted, sentiment = got[0]
    # The fake answers {"said": <prompt>}: the struct takes the field it names, NULL for the other.
    assert extracted["person"] is None and extracted["said"].endswith("\n\nAda is happy")
    assert extracted["said"].startswith(
        "Extract these kinds of information from the following text: said, person."
    )
    assert sentiment is None  # the fake's JSON names no label
    assert got[1] == [None, None]
    schemas = [
        r.json()["response_format"]["json_schema"]["schema"]
        for r in world.fake.requests
        if r.path.endswith("/chat/completions")
    ]
    assert len(schemas) == 2  # NULL text: no request
    assert {"said": {"type": ["string", "null"]}, "person": {"type": ["string", "null"]}} in [
        s["properties"] for s in schemas
    ]
    assert {"label": {"type": "string", "enum": ["positive", "negative", "neutral", "mixed"]}} in [
        s["properties"] for s in schemas
    ]


def test_embeddings_endpoint_and_ai_similarity(world: World) -> None:
    got = rows(
        world.admin,
        f"SELECT ai_query('{EMBED}', x), ai_similarity(x, x), ai_similarity(x, 'something else')"
        " FROM (VALUES ('the cat sat')) v(x)",
    )
    vector, same, other = got[0]
    assert len(vector) == 8 and all(isinstance(v, float) for v in vector)  # FLOAT[]
    assert same == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= other < 0.999


def test_cli_tables_query(world: World) -> None:
    env = {**os.environ, "MODELPORT_HOST": world.server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "tables",
            "query",
            "--output",
            "json",
            f"SELECT ai_query('{MODEL}', {FEATURES}) AS p FROM {ROWS} WHERE x IS NOT NULL",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == [[1], [0]]


def test_library_on_a_users_own_connection(world: World) -> None:
    import modelport.sql

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT x::DOUBLE AS x FROM (VALUES (0.9), (0.1)) v(x)")
    modelport.sql.register(con, host=world.server.url, token=ADMIN_TOKEN)
    rel = modelport.sql.query(con, f"SELECT x, ai_query('{MODEL}', {FEATURES}) AS p FROM t ORDER BY x")
    assert rel is not None and rel.fetchall() == [(0.1, 0), (0.9, 1)]
    with pytest.raises(InvalidParameterValue, match="modelParameters"):
        modelport.sql.query(con, f"SELECT ai_query('{MODEL}', 1, modelParameters => named_struct('a', 1))")
    refused = duckdb.connect()
    modelport.sql.register(refused, host=world.server.url, token=world.alice_token)
    from modelport.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        modelport.sql.query(refused, f"SELECT ai_query('{CHAT}', 'hi')")
