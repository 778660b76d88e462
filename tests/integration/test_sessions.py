"""Browser sign-in (api/sessions.py): the session cookie, its CSRF checks, signing out, and
MLflow's own UI under /mlflow/ riding on it with the registry permissions applied."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

SESSION = "/api/2.0/modelport/session"
SCOPES = "/api/2.0/secrets/scopes"
MODELS = "/api/2.0/mlflow/registered-models"
UI_MODELS = "/mlflow/ajax-api/2.0/mlflow/registered-models"


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as c:
        yield c


@pytest.fixture(scope="module")
def anon(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def user(admin: httpx.Client) -> tuple[str, str]:
    name = unique("session-user")
    create_user(admin, name)
    return name, obo_token(admin, user_name=name)["token_value"]


def sign_in(anon: httpx.Client, token: str, **headers: str) -> httpx.Response:
    resp = anon.post(SESSION, json={"token": token}, headers=headers)
    anon.cookies.clear()  # each request names its cookies itself
    return resp


def cookies_of(resp: httpx.Response) -> dict[str, SimpleCookie]:
    """Each Set-Cookie header of an answer, parsed, by cookie name."""
    parsed: dict[str, SimpleCookie] = {}
    for raw in resp.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(raw)
        parsed.update({name: cookie for name in cookie})
    return parsed


def session_of(resp: httpx.Response) -> tuple[str, str]:
    jar = cookies_of(resp)
    return jar["modelport_session"]["modelport_session"].value, jar["modelport_csrf"]["modelport_csrf"].value


def jar(session: str, csrf: str | None = None) -> str:
    return f"modelport_session={session}" + (f"; modelport_csrf={csrf}" if csrf else "")


def test_sign_in_sets_an_httponly_strict_cookie_of_a_new_short_token(
    anon: httpx.Client, user: tuple[str, str]
) -> None:
    name, token = user
    resp = sign_in(anon, token)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user_name"] == name and body["is_admin"] is False and body["expiry_time"] > 0
    raw = {c.split("=", 1)[0]: c for c in resp.headers.get_list("set-cookie")}
    session = raw["modelport_session"].lower()
    assert "httponly" in session and "samesite=strict" in session and "path=/" in session
    assert "secure" not in session  # plain HTTP here: a Secure cookie would never come back
    assert "httponly" not in raw["modelport_csrf"].lower()
    assert "samesite=strict" in raw["modelport_csrf"].lower()
    max_age = int(re.search(r"max-age=(\d+)", session).group(1))  # type: ignore[union-attr]
    assert 12 * 3600 - 60 <= max_age <= 12 * 3600  # --session-hours 12
    value, _ = session_of(resp)
    assert value != token and value.startswith("dapi")  # a token of its own, revocable alone
    me = anon.get(SESSION, headers={"Cookie": jar(value)})
    assert me.status_code == 200 and me.json()["user_name"] == name
    listed = anon.get("/api/2.0/token/list", headers={"Authorization": f"Bearer {token}"}).json()
    assert "browser session" in [t.get("comment") for t in listed["token_infos"]]


def test_sign_in_refusals(anon: httpx.Client, server: ServerProcess, user: tuple[str, str]) -> None:
    _, token = user
    wrong = sign_in(anon, "dapi-not-a-token")
    assert wrong.status_code == 401 and wrong.json()["error_code"] == "UNAUTHENTICATED"
    assert "set-cookie" not in wrong.headers
    missing = anon.post(SESSION, json={})
    assert missing.status_code == 400 and missing.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # a page on another site must not sign the visitor in (login CSRF)
    evil = sign_in(anon, token, Origin="http://evil.example")
    assert evil.status_code == 403 and evil.json()["error_code"] == "PERMISSION_DENIED"
    assert sign_in(anon, token, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    own = f"http://{urlsplit(server.url).netloc}"
    assert sign_in(anon, token, Origin=own, **{"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_session_never_outlives_the_token_signed_in_with(
    admin: httpx.Client, anon: httpx.Client, user: tuple[str, str]
) -> None:
    name, _ = user
    short = admin.post(
        "/api/2.0/token-management/on-behalf-of/tokens",
        json={"user_name": name, "lifetime_seconds": 120, "comment": "short"},
    ).json()["token_value"]
    resp = sign_in(anon, short)
    assert resp.status_code == 200
    max_age = int(cookies_of(resp)["modelport_session"]["modelport_session"]["max-age"])
    assert 60 <= max_age <= 120
    assert resp.json()["expiry_time"] > 0


def test_cookie_reads_freely_but_writes_need_proof_of_origin(
    anon: httpx.Client, server: ServerProcess, user: tuple[str, str]
) -> None:
    _, token = user
    session, csrf = session_of(sign_in(anon, token))
    assert anon.get("/api/2.0/serving-endpoints").status_code == 401  # no cookie, no token
    assert anon.get("/api/2.0/serving-endpoints", headers={"Cookie": jar(session)}).status_code == 200
    scope = unique("session-scope").replace("-", "_")
    create = {"scope": scope}
    refused = [
        {"Cookie": jar(session, csrf)},  # the cookie alone: what a forged form would send
        {"Cookie": jar(session, csrf), "X-CSRF-Token": "0" * 40},
        {"Cookie": jar(session, csrf), "X-CSRF-Token": csrf[:-1] + ("0" if csrf[-1] != "0" else "1")},
        {"Cookie": jar(session, csrf), "Origin": "http://evil.example"},
        {"Cookie": jar(session, csrf), "Origin": "null"},
        {"Cookie": jar(session, csrf), "Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    ]
    for headers in refused:
        resp = anon.post(f"{SCOPES}/create", json=create, headers=headers)
        assert resp.status_code == 403, (headers, resp.text)
        assert resp.json()["error_code"] == "PERMISSION_DENIED"
        assert "Cross-site request refused" in resp.json()["message"]
    listed = anon.get(f"{SCOPES}/list", headers={"Authorization": f"Bearer {token}"}).json()
    assert scope not in [s["name"] for s in listed.get("scopes", [])]  # nothing refused was done
    ok = anon.post(
        f"{SCOPES}/create", json=create, headers={"Cookie": jar(session, csrf), "X-CSRF-Token": csrf}
    )
    assert ok.status_code == 200, ok.text
    own = f"http://{urlsplit(server.url).netloc}"
    by_origin = anon.post(f"{SCOPES}/delete", json=create, headers={"Cookie": jar(session), "Origin": own})
    assert by_origin.status_code == 200, by_origin.text
    by_fetch_site = anon.post(
        f"{SCOPES}/create", json=create, headers={"Cookie": jar(session), "Sec-Fetch-Site": "same-origin"}
    )
    assert by_fetch_site.status_code == 200, by_fetch_site.text
    # a request with its own Authorization header is the header's: no cookie check, no CSRF
    bearer = anon.post(
        f"{SCOPES}/delete",
        json=create,
        headers={"Cookie": jar("dapi-garbage"), "Authorization": f"Bearer {token}"},
    )
    assert bearer.status_code == 200, bearer.text


def test_sign_out_and_token_deletion_end_the_session(anon: httpx.Client, user: tuple[str, str]) -> None:
    _, token = user
    session, csrf = session_of(sign_in(anon, token))
    out = anon.delete(SESSION, headers={"Cookie": jar(session, csrf), "X-CSRF-Token": csrf})
    anon.cookies.clear()
    assert out.status_code == 200, out.text
    cleared = {c.split("=", 1)[0]: c.lower() for c in out.headers.get_list("set-cookie")}
    assert "max-age=0" in cleared["modelport_session"] and "max-age=0" in cleared["modelport_csrf"]
    after = anon.get("/api/2.0/serving-endpoints", headers={"Cookie": jar(session)})
    assert after.status_code == 401 and after.json()["error_code"] == "UNAUTHENTICATED"
    # signing out again with the dead cookie still clears it, without an error
    again = anon.delete(SESSION, headers={"Cookie": jar(session, csrf), "X-CSRF-Token": csrf})
    anon.cookies.clear()
    assert again.status_code == 200
    # deleting the session's token like any token ends it too
    session, _ = session_of(sign_in(anon, token))
    bearer = {"Authorization": f"Bearer {token}"}
    infos = anon.get("/api/2.0/token/list", headers=bearer).json()["token_infos"]
    assert anon.get(SESSION, headers={"Cookie": jar(session)}).status_code == 200
    for info in infos:
        if info.get("comment") == "browser session":
            assert (
                anon.post(
                    "/api/2.0/token/delete", json={"token_id": info["token_id"]}, headers=bearer
                ).status_code
                == 200
            )
    assert anon.get(SESSION, headers={"Cookie": jar(session)}).status_code == 401


def test_mlflow_ui_page_needs_a_session(anon: httpx.Client, user: tuple[str, str]) -> None:
    _, token = user
    away = anon.get("/mlflow/")
    assert away.status_code == 303 and away.headers["location"] == "/ui/?next=/mlflow/"
    assert anon.get("/mlflow").status_code == 307
    session, _ = session_of(sign_in(anon, token))
    page = anon.get("/mlflow/", headers={"Cookie": jar(session)})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    script = re.search(r'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', page.text)
    assert script is not None, page.text[:500]
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    asset = anon.get(f"/mlflow/{script.group(1)}")
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]


def test_mlflow_ui_api_calls_apply_registry_permissions(
    admin: httpx.Client, anon: httpx.Client, server: ServerProcess, user: tuple[str, str]
) -> None:
    _, token = user
    theirs = unique("admins-model")
    assert admin.post(f"{MODELS}/create", json={"name": theirs}).status_code == 200
    mine = unique("users-model")
    bearer = {"Authorization": f"Bearer {token}"}
    assert anon.post(f"{MODELS}/create", json={"name": mine}, headers=bearer).status_code == 200
    session, csrf = session_of(sign_in(anon, token))
    cookie = {"Cookie": jar(session, csrf)}
    # what MLflow's UI asks, relative to /mlflow/: only what the user may read comes back
    found = anon.get(f"{UI_MODELS}/search", params={"max_results": 1000}, headers=cookie)
    assert found.status_code == 200, found.text
    names = {m["name"] for m in found.json().get("registered_models", [])}
    assert mine in names and theirs not in names
    # the UI's writes carry Origin (browsers add it): still refused without the permission
    own = {**cookie, "Origin": f"http://{urlsplit(server.url).netloc}"}
    delete = anon.request("DELETE", f"{UI_MODELS}/delete", json={"name": theirs}, headers=own)
    assert delete.status_code == 403 and delete.json()["error_code"] == "PERMISSION_DENIED"
    assert admin.get(f"{MODELS}/get", params={"name": theirs}).status_code == 200  # still there
    renamed = anon.patch(
        f"{UI_MODELS}/update", json={"name": mine, "description": "from the UI"}, headers=own
    )
    assert renamed.status_code == 200, renamed.text
    assert admin.get(f"{MODELS}/get", params={"name": mine}).json()["registered_model"]["description"] == (
        "from the UI"
    )


def test_mlflow_ui_graphql_through_the_session(
    admin: httpx.Client, anon: httpx.Client, server: ServerProcess, user: tuple[str, str]
) -> None:
    """MLflow's UI posts GraphQL to /mlflow/graphql (relative to its page) with the cookie."""
    private = admin.post("/api/2.0/mlflow/experiments/create", json={"name": unique("admins-exp")})
    assert private.status_code == 200, private.text
    exp = private.json()["experiment_id"]
    _, token = user
    session, _ = session_of(sign_in(anon, token))
    headers = {"Cookie": jar(session), "Origin": f"http://{urlsplit(server.url).netloc}"}
    query = "query($id: String) { mlflowGetExperiment(input: {experimentId: $id}) { experiment { name } } }"
    body = {"query": query, "variables": {"id": exp}}
    refused = anon.post("/mlflow/graphql", json=body, headers=headers)
    assert refused.status_code == 200, refused.text
    assert refused.json()["data"]["mlflowGetExperiment"] is None
    assert "PERMISSION_DENIED" in str(refused.json()["errors"])
    seen = admin.post("/mlflow/graphql", json=body)
    assert seen.json()["data"]["mlflowGetExperiment"]["experiment"]["name"].startswith("admins-exp")
