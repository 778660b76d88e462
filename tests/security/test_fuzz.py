"""Schemathesis against modelport's own OpenAPI document, on a real server.

Two passes of ``st run`` (its coverage, fuzzing and stateful phases; the stateful one follows
the document's links and the ones schemathesis infers, e.g. token list → token delete): one
with the admin token, one with a user who holds no permission. Every case must get a 2xx, or
a 4xx with ``error_code`` and ``message`` (``fuzz_hooks.databricks_error``); a 405 must say
``Allow``; a route that needs a token must refuse a missing one; no 5xx, no traceback in a
body. After both passes the server still answers ``/health`` and its log holds no traceback.

Bounded in ``make test``: the admin pass by time (``MODELPORT_FUZZ_SECONDS``, 40), the user's
to 5 cases an operation and half that time. ``make fuzz`` sets ``MODELPORT_FUZZ_EXAMPLES``
(cases an operation in the admin's fuzzing phase, a fifth of that for the user; no time
bound) and ``MODELPORT_FUZZ_MIN_CASES`` (5,000), and prints the figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

ROOT = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).with_name("st")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "unsupported_method",
        "ignored_auth",
        "databricks_error",
    ]
)
_STATUS = re.compile(r"request method=\S+ path=\S* status=(\d+)")


def _st(url: str, token: str, workdir: Path, protected: list[str], limits: list[str]) -> tuple[int, str, int]:
    """One ``st run``: (exit code, its output, cases generated)."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        str(ST),
        "run",
        f"{url}/api/2.0/modelport/openapi.json",
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--workers",
        "2",
        "--no-color",
        "--warnings",
        "off",
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
    ]
    args += limits
    # make test runs one fixed seed (a failure reproduces; ``st`` prints the seed either way);
    # make fuzz sets MODELPORT_FUZZ_SEED empty for a new one each run.
    seed = os.environ.get("MODELPORT_FUZZ_SEED", "20261206")
    if seed:
        args += ["--seed", seed]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.security.fuzz_hooks",
        "PYTHONPATH": str(ROOT),
        "MODELPORT_FUZZ_PROTECTED_IDS": ",".join(protected),
    }
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=3600)
    out = done.stdout + done.stderr
    found = re.search(r"(\d+) generated", out)
    return done.returncode, out, int(found[1]) if found else 0


def _statuses(log: str) -> Counter[str]:
    return Counter(f"{m[0]}xx" for m in _STATUS.findall(log))


def test_fuzzing_finds_no_server_error(
    security_server: ServerProcess, admin: httpx.Client, tmp_path: Path
) -> None:
    examples = int(os.environ.get("MODELPORT_FUZZ_EXAMPLES", "0"))
    seconds = os.environ.get("MODELPORT_FUZZ_SECONDS", "40")
    # The admin pass runs every phase; the user's (whom every route refuses or answers with
    # nothing) only fuzzing and stateful, at a fifth of the examples.
    admin_limits = ["--max-examples", str(examples)] if examples else ["--max-time", seconds]
    user_limits = ["--phases", "fuzzing,stateful", "--max-examples", str(max(5, examples // 5))]
    user_limits += [] if examples else ["--max-time", str(int(float(seconds) / 2))]
    user = create_user(admin, unique("fuzz-user"))["userName"]
    user_token = obo_token(admin, user_name=user)["token_value"]
    tokens = admin.get("/api/2.0/token-management/tokens").json()["token_infos"]
    admins = [
        g
        for g in admin.get("/api/2.0/preview/scim/v2/Groups").json()["Resources"]
        if g["displayName"] == "admins"
    ]
    protected = [t["token_id"] for t in tokens] + ["admins", admins[0]["id"]]
    log_start = len(security_server.log_path.read_text(errors="replace"))

    started = time.monotonic()
    runs = [
        ("admin", *_st(security_server.url, ADMIN_TOKEN, tmp_path / "admin", protected, admin_limits)),
        (
            "no-permission user",
            *_st(security_server.url, user_token, tmp_path / "user", protected, user_limits),
        ),
    ]
    elapsed = time.monotonic() - started

    health = httpx.get(f"{security_server.url}/health", timeout=10)
    log = security_server.log_path.read_text(errors="replace")[log_start:]
    statuses = _statuses(log)
    cases = sum(run[3] for run in runs)
    summary = (
        f"fuzz: {cases} cases ({', '.join(f'{who}: {n}' for who, _, _, n in runs)}) in {elapsed:.0f} s; "
        f"server answers by class: {dict(sorted(statuses.items()))}"
    )
    print(summary)
    (security_server.data_dir / "fuzz-summary.txt").write_text(summary + "\n")
    for who, _, out, _ in runs:
        (security_server.data_dir / f"fuzz-{who.replace(' ', '-')}.txt").write_text(out)
    for who, code, out, _ in runs:
        assert "unique failure" not in out, f"schemathesis as {who} found failures:\n{out[-12000:]}"
        # st exits 1 on an error of its own too: CPython 3.11's "AST constructor recursion depth
        # mismatch" SystemError in its coverage phase was seen once in 9,000 cases (2 workers).
        # Those are its errors, not the server's: allowed, printed; any other exit fails.
        if code != 0:
            assert "Runtime Error" in out and "Server error" not in out, out[-12000:]
            print(f"schemathesis as {who} had errors of its own:", re.findall(r"\w+Error: [^\n]*", out)[:3])
    assert health.status_code == 200
    assert admin.get("/api/2.0/preview/scim/v2/Me").status_code == 200, "the admin's token was lost"
    assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]
    assert statuses["5xx"] == 0
    minimum = int(os.environ.get("MODELPORT_FUZZ_MIN_CASES", "0"))
    assert cases >= max(minimum, 100), summary
    if security_server.proc is not None:
        assert security_server.proc.poll() is None
