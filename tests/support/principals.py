"""Users and their tokens on a real server, made through the SCIM and token-management APIs."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["create_user", "obo_token"]

SCIM = "/api/2.0/preview/scim/v2"


def create_user(http: httpx.Client, user_name: str) -> dict[str, Any]:
    """Create a (non-admin) user with the admin client ``http``; return the SCIM resource."""
    resp = http.post(f"{SCIM}/Users", json={"userName": user_name, "displayName": "Alice Test"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def obo_token(http: httpx.Client, **who: str) -> dict[str, Any]:
    """An on-behalf-of token for ``user_name=`` or ``application_id=``: ``{"token_value", ...}``."""
    resp = http.post("/api/2.0/token-management/on-behalf-of/tokens", json={**who, "comment": "for tests"})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())
