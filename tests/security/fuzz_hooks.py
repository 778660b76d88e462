"""Schemathesis hooks for fuzzing modelport (``SCHEMATHESIS_HOOKS=tests.security.fuzz_hooks``).

- :func:`databricks_error` checks every answer: a 2xx, or a 4xx whose body is
  ``{"error_code": str, "message": str}``; never a 5xx; never a Python traceback in a body.
- :func:`before_call` keeps the fuzzing principals able to go on: a case that would delete one
  of their own tokens or change the members of the ``admins`` group
  (``MODELPORT_FUZZ_PROTECTED_IDS``: comma-separated token ids and the group's id and name) is
  sent against an id that does not exist instead (the route still runs and must answer 4xx).
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

_MISSING = "0" * 32
_TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')


def _protected() -> set[str]:
    return {t for t in os.environ.get("MODELPORT_FUZZ_PROTECTED_IDS", "").split(",") if t}


@schemathesis.check
def databricks_error(ctx: Any, response: Any, case: Any) -> None:
    text = response.text or ""
    for marker in _TRACEBACK_MARKERS:
        if marker in text:
            raise AssertionError(f"A traceback in the body of a {response.status_code}: {text[:300]}")
    status = response.status_code
    if status >= 500:
        raise AssertionError(f"{status}: {text[:300]}")
    if 400 <= status < 500:
        try:
            body = json.loads(text)
        except ValueError:
            raise AssertionError(f"A {status} whose body is not JSON: {text[:300]!r}") from None
        if not (
            isinstance(body, dict)
            and isinstance(body.get("error_code"), str)
            and isinstance(body.get("message"), str)
            and body["error_code"]
            and body["message"]
        ):
            raise AssertionError(f"A {status} without error_code and message: {text[:300]}")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    protected = _protected()
    params = case.path_parameters or {}
    if path.endswith("/token-management/tokens/{token_id}") and str(params.get("token_id")) in protected:
        params["token_id"] = _MISSING
    body = case.body if isinstance(case.body, dict) else {}
    if path == "/api/2.0/token/delete" and str(body.get("token_id")) in protected:
        body["token_id"] = _MISSING
    if path == "/api/2.0/preview/scim/v2/Groups/{id}" and str(params.get("id")) in protected:
        params["id"] = _MISSING
