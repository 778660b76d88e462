"""HTTPS on the same paths: --tls-certfile/--tls-keyfile, checked with the Databricks SDK."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess

pytestmark = pytest.mark.slow


def test_https_serves_the_same_api(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = ServerProcess(
        tmp_path / "mp", extra_args=["--tls-certfile", str(cert), "--tls-keyfile", str(key)]
    )
    server.start()
    try:
        assert server.url.startswith("https://")
        discovery = httpx.get(f"{server.url}/.well-known/databricks-config", verify=str(cert))
        assert discovery.status_code == 200
        assert discovery.json()["oidc_endpoint"] == f"{server.url}/oidc"
        listing = httpx.get(
            f"{server.url}/api/2.0/serving-endpoints/",
            verify=str(cert),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert listing.json() == {"endpoints": []}
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5)
    finally:
        assert server.stop() == 0
