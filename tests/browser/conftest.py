"""One real ``modelport serve`` (system endpoints on), one loopback OpenAI fake and one chromium
page for the whole browser suite; the tests run in file order and build on each other."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"
WIDTHS = (1280, 390)
MODEL = "ui-iris-model"
#: The suite's server: system endpoints on; refusal bursts written 3 s after their last refusal
#: (30 by default) and metrics history rows every 2 s (10), so the console's tests wait less.
UI_SERVER_ENV = {
    "MODELPORT_SYSTEM_ENDPOINTS": "true",
    "MODELPORT_REFUSAL_BURST_QUIET_SECONDS": "3",
    "MODELPORT_METRIC_HISTORY_FLUSH_SECONDS": "2",
}
#: Registered under this plain name and served as ``main.default.<it>``, as the README does.
CATALOG_MODEL = "ui_fraud_detector"


def skip_browser_tests(items: list[pytest.Item], here: Path) -> None:
    """Skip the tests under ``here`` when chromium or playwright is missing (saying which)."""
    if not CHROMIUM.exists():
        reason = f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        reason = "browser tests need playwright (pip install -e '.[dev]')"
    else:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(skip)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_browser_tests(items, Path(__file__).parent)


@pytest.fixture(scope="package")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("ui-data"), env=dict(UI_SERVER_ENV)).start()
    yield proc
    try:
        proc.stop()
    except Exception:
        proc.kill()


@pytest.fixture(scope="package")
def api(ui_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=ui_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="package")
def fake_openai() -> Iterator[Any]:
    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


class _Registration:
    """Registers the scikit-learn models in a subprocess while the browser starts: mlflow's import
    is slow, and the subprocess keeps mlflow's tracking URI and token out of this test process."""

    def __init__(self, url: str) -> None:
        code = (
            "import sys; from tests.support.models import log_sklearn_model as log\n"
            "for name in sys.argv[3:]: log(sys.argv[1], sys.argv[2], name)"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, url, ADMIN_TOKEN, MODEL, CATALOG_MODEL],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 120) -> None:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out.decode(errors="replace")[-3000:]


@pytest.fixture(scope="package")
def registered_model(ui_server: ServerProcess) -> Iterator[_Registration]:
    job = _Registration(ui_server.url)
    yield job
    if job.proc.poll() is None:
        job.proc.kill()
        job.proc.wait()


@pytest.fixture(scope="package")
def page_errors() -> list[str]:
    return []


@pytest.fixture(scope="package")
def csp_violations() -> list[str]:
    """Console messages of the Content-Security-Policy refusing something (chromium logs each)."""
    return []


def _record_csp(violations: list[str], message: Any) -> None:
    if "Content Security Policy" in message.text:
        violations.append(message.text)


@pytest.fixture(scope="package")
def page(
    ui_server: ServerProcess,
    registered_model: _Registration,
    page_errors: list[str],
    csp_violations: list[str],
) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900}, base_url=ui_server.url)
        context.set_default_timeout(30_000)
        pg = context.new_page()
        pg.on("pageerror", lambda exc: page_errors.append(str(exc)))
        pg.on("console", lambda message: _record_csp(csp_violations, message))
        try:
            yield pg
        finally:
            context.close()
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "page" in getattr(item, "funcargs", {}):
        SCREENSHOTS.mkdir(exist_ok=True)
        page = item.funcargs["page"]
        try:
            page.screenshot(path=str(SCREENSHOTS / f"FAILED-{item.name}.png"), full_page=True)
            report.sections.append(("page", f"{page.url}\n{page.locator('main').inner_text()[:3000]}"))
        except Exception:  # the page is gone
            pass


def screenshot(page: Any, name: str) -> None:
    """``screenshots/<name>-<width>.png`` at each width (full page), back to the first width after."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.evaluate("document.getElementById('toast').replaceChildren()")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        # readable at this width: nothing wider than the window (tables and code scroll inside)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow} px wider than {width} px"
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def card_screenshot(page: Any, selector: str, name: str) -> None:
    """``screenshots/<name>-<width>.png`` of the element ``selector`` alone, at each width: the
    docs show one card, not a whole endpoint page."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        page.locator(selector).screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"))
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def wait_until(page: Any, expression: str, timeout: float = 30_000) -> None:
    """Poll a JavaScript expression until it is truthy (``timeout`` in ms). Playwright's
    ``wait_for_function`` evaluates its predicate as a string inside the page, which the UI's
    Content-Security-Policy (no ``unsafe-eval``) refuses; ``page.evaluate`` goes through DevTools."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true after {timeout / 1000:g} s: {expression}"
        page.wait_for_timeout(100)


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter((el) => el.type !== 'hidden' && !el.closest('[hidden]'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map((el) => el.id || el.outerHTML.slice(0, 80))"""


def assert_accessible(page: Any) -> None:
    """Every visible form control has a label, and the page has one h1."""
    assert page.evaluate(UNLABELLED) == []
    assert page.locator("main h1").count() == 1
