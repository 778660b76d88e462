"""The serving UI's static files keep to what its Content-Security-Policy allows and to its module
layout: no inline scripts, event-handler attributes or style attributes in the HTML, no string-to-
code or HTML-string APIs in the scripts (a model's answer or an endpoint's name drawn as HTML would
be a script injection), and every relative import names a module that exists and exports the name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelport.api.security_headers import CONTENT_SECURITY_POLICY
from modelport.ui.routes import STATIC

SCRIPTS = sorted(STATIC.glob("*.js"))
#: APIs that turn a string into code or markup: refused by the policy or unsafe with our data.
FORBIDDEN = re.compile(
    r"\.innerHTML\b|\.outerHTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\(|"
    r"setAttribute\(\s*['\"](style|on\w+)['\"]|\bsetTimeout\(\s*['\"`]"
)
IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([\w.-]+)";', re.M)
EXPORT = re.compile(r"^export (?:async )?(?:function\*?|const|let|class) (\w+)", re.M)


def test_the_policy_allows_no_inline_code() -> None:
    policy = dict(p.strip().split(" ", 1) for p in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_index_html_has_no_inline_script_style_or_handler() -> None:
    html = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts, "the page loads its module"
    for attrs, body in scripts:
        assert 'src="/ui/' in attrs and body.strip() == "", attrs
    assert not re.search(r"\son\w+\s*=", html), "event-handler attribute"
    assert not re.search(r"\sstyle\s*=", html), "style attribute"
    assert "<style" not in html


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_no_string_to_code_or_html_apis(script: Path) -> None:
    found = [
        f"{script.name}:{n}: {line.strip()}"
        for n, line in enumerate(script.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert found == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_relative_imports_name_existing_exports(script: Path) -> None:
    for names, module in IMPORT.findall(script.read_text()):
        target = STATIC / module
        assert target.exists(), f"{script.name} imports {module}, which does not exist"
        exported = set(EXPORT.findall(target.read_text()))
        for name in (n.strip() for n in names.split(",") if n.strip()):
            assert name.split(" as ")[0].strip() in exported, f"{script.name}: {module} has no export {name}"


def test_app_js_is_the_router_not_the_pages() -> None:
    """The console is split per page (issue 23); app.js keeps the router, login and start."""
    assert len((STATIC / "app.js").read_text().splitlines()) < 300
