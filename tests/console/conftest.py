"""The console pages of issue 23 in chromium: one real ``modelport serve`` (system endpoints on),
one loopback OpenAI fake and one chromium page for the whole package, as ``tests/browser``, but
a package of its own so that it runs on another pytest worker beside the browser suite.

The fixtures are ``tests/browser/conftest.py``'s (imported here, so each package gets its own
server and page); :func:`sign_in` opens a page signed in as the admin, whichever module runs
first. Each module creates its own endpoints, tokens and principals under names of its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (  # noqa: F401  (fixtures, registered by being imported here)
    api,
    csp_violations,
    fake_openai,
    page,
    page_errors,
    pytest_runtest_makereport,
    registered_model,
    skip_browser_tests,
    ui_server,
)
from tests.serverproc import ADMIN_TOKEN


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_browser_tests(items, Path(__file__).parent)


def sign_in(pg: Any, path: str) -> None:
    """Open ``path`` (``/ui/#/...``) signed in as the admin, signing in first when the page is not."""
    pg.goto(path)
    pg.wait_for_selector("main h1")
    if pg.url.endswith("#/login"):
        pg.fill("#token", ADMIN_TOKEN)
        pg.keyboard.press("Enter")
        pg.wait_for_url(re.compile(r"#/endpoints$"))
        pg.goto(path)
        pg.wait_for_selector("main h1")
