"""Hardening basics on the real server: failed authentications limited per client address,
``/metrics`` behind a token (or public with ``--public-metrics``), request body and head limits,
and the security headers of the UI and the API.

Two servers for the module: ``guarded`` (small limits, trusts X-Forwarded-For from 127.0.0.1 so
that one test client can speak for several addresses) and ``public`` (``--public-metrics``, no
trusted proxy).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess

LIMIT = 5
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BAD = {"Authorization": "Bearer dapi-not-a-token"}
API = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--auth-failure-limit", str(LIMIT), "--auth-failure-window", "60"]
    args += ["--trusted-proxies", "127.0.0.1", "--max-body-mb", "1", "--max-upload-mb", "1"]
    args += ["--max-header-kb", "8", "--max-headers", "40"]
    proc = ServerProcess(tmp_path_factory.mktemp("hardening"), extra_args=args).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--public-metrics", "--auth-failure-limit", "3"]
    proc = ServerProcess(tmp_path_factory.mktemp("public-metrics"), extra_args=args).start()
    yield proc
    proc.stop()


def _from(address: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-Forwarded-For": address}


def _assert_alive(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert server.proc is not None and server.proc.poll() is None
    assert "Traceback" not in server.log_tail(400)


# ---- failed authentications -------------------------------------------------------------


def test_the_failure_after_the_limit_gets_429_for_that_address_only(guarded: ServerProcess) -> None:
    url = f"{guarded.url}{API}"
    attacker, neighbour = "203.0.113.7", "203.0.113.8"
    assert [httpx.get(url, headers=_from(attacker, BAD)).status_code for _ in range(LIMIT)] == [401] * LIMIT
    # Blocked: every request of the address, a valid token's too, until the window ends.
    for headers in (BAD, ADMIN):
        blocked = httpx.get(url, headers=_from(attacker, headers))
        assert blocked.status_code == 429, blocked.text
        assert blocked.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
    # The load balancer's probe still answers; another address is not affected.
    assert httpx.get(f"{guarded.url}/health", headers=_from(attacker, {})).status_code == 200
    assert httpx.get(url, headers=_from(neighbour, ADMIN)).status_code == 200
    assert httpx.get(url, headers=_from(neighbour, BAD)).status_code == 401
    assert "client address blocked after failed authentications" in guarded.log_tail(400)


# ---- /metrics ---------------------------------------------------------------------------


def test_metrics_need_a_token_a_service_principal_will_do(guarded: ServerProcess) -> None:
    anonymous = httpx.get(f"{guarded.url}/metrics", headers=_from("192.0.2.50", {}))
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    with httpx.Client(base_url=guarded.url, headers=ADMIN, timeout=30) as admin:
        app_id = f"prometheus-{uuid.uuid4().hex[:8]}"
        created = admin.post(f"{SCIM}/ServicePrincipals", json={"applicationId": app_id})
        assert created.status_code == 201, created.text
        token = admin.post(
            "/api/2.0/token-management/on-behalf-of/tokens", json={"application_id": app_id}
        ).json()["token_value"]
    scraped = httpx.get(f"{guarded.url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200
    assert "# TYPE modelport_http_requests_total counter" in scraped.text


def test_public_metrics_need_no_token(public: ServerProcess) -> None:
    scraped = httpx.get(f"{public.url}/metrics")
    assert scraped.status_code == 200
    assert "# TYPE modelport_http_requests_total counter" in scraped.text


# After the test above: this one blocks 127.0.0.1 on the public server.
def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(public: ServerProcess) -> None:
    url = f"{public.url}{API}"
    # Each request claims another address; the server counts its real peer, 127.0.0.1.
    statuses = [httpx.get(url, headers=_from(f"198.51.100.{i}", BAD)).status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]


# ---- body limits ------------------------------------------------------------------------


def _chunks(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, size, chunk):
        yield b"x" * min(chunk, size - start)


def _assert_too_large(resp: httpx.Response, limit: str) -> None:
    assert resp.status_code == 413, resp.text
    body = resp.json()
    assert body["error_code"] == "REQUEST_TOO_LARGE"
    assert limit in body["message"]
    assert "Traceback" not in resp.text


def test_an_oversized_control_plane_body_gets_413(guarded: ServerProcess) -> None:
    url = f"{guarded.url}{API}"
    big = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    _assert_too_large(httpx.post(url, headers=ADMIN, content=big), "1 MiB limit of a control-plane request")
    # A chunked body (no Content-Length) is counted as it arrives.
    chunked = httpx.post(url, headers=ADMIN, content=_chunks(2 << 20))
    _assert_too_large(chunked, "1 MiB limit of a control-plane request")
    # Under the limit the route answers as usual.
    small = httpx.post(url, headers=ADMIN, content=_chunks(1000))
    assert small.status_code == 400 and small.json()["error_code"] == "MALFORMED_REQUEST"
    _assert_alive(guarded)


def test_an_oversized_artifact_upload_gets_413_and_mlflow_json_its_own_limit(guarded: ServerProcess) -> None:
    upload = f"{guarded.url}/api/2.0/mlflow-artifacts/artifacts/0/{uuid.uuid4().hex}/artifacts/big.bin"
    _assert_too_large(
        httpx.put(upload, headers=ADMIN, content=b"x" * (2 << 20)), "1 MiB limit of an artifact"
    )
    # Werkzeug reads nothing of a chunked body: refused rather than stored empty.
    chunked = httpx.put(upload, headers=ADMIN, content=_chunks(1000))
    assert chunked.status_code == 400 and chunked.json()["error_code"] == "MALFORMED_REQUEST"
    assert "Content-Length" in chunked.json()["message"]
    # MLflow's JSON API may send 16 MiB whatever --max-body-mb says; more is refused.
    search = f"{guarded.url}/api/2.0/mlflow/registered-models/search"
    _assert_too_large(httpx.post(search, headers=ADMIN, content=b"x" * (17 << 20)), "16 MiB limit")
    _assert_alive(guarded)


def test_an_oversized_query_gets_413(guarded: ServerProcess) -> None:
    url = f"{guarded.url}/serving-endpoints/none/invocations"
    _assert_too_large(httpx.post(url, headers=ADMIN, content=b"x" * (17 << 20)), "16 MB limit of a query")
    _assert_alive(guarded)


# ---- head limits ------------------------------------------------------------------------


def _raw(server: ServerProcess, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_oversized_headers_get_431_and_the_server_stays_up(guarded: ServerProcess) -> None:
    big = httpx.get(f"{guarded.url}{API}", headers={**ADMIN, "X-Padding": "p" * 9000})
    assert big.status_code == 431
    assert big.json()["error_code"] == "REQUEST_HEADERS_TOO_LARGE"
    many = httpx.get(f"{guarded.url}{API}", headers={**ADMIN, **{f"X-H{i}": "1" for i in range(50)}})
    assert many.status_code == 431
    # A header that never ends is cut off once it passes the limit (the server does not wait for it).
    endless = _raw(guarded, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * (64 * 1024))
    assert endless.startswith(b"HTTP/1.1 431 ")
    assert httpx.get(f"{guarded.url}{API}", headers={**ADMIN, "X-Padding": "p" * 4000}).status_code == 200
    _assert_alive(guarded)


# ---- security headers -------------------------------------------------------------------


def test_the_ui_has_security_headers_and_the_api_nosniff(guarded: ServerProcess) -> None:
    page = httpx.get(f"{guarded.url}/ui/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{guarded.url}/ui/app.js").headers["content-security-policy"] == csp
    api = httpx.get(f"{guarded.url}{API}", headers=ADMIN)
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers
