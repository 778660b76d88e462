"""Regenerate the parts of the docs that come from the code.

- docs/cli.md: the ``--help`` blocks under "## Help output";
- docs/configuration.md: the settings table (from modelport.config.SETTINGS);
- docs/api.md: the route reference, from modelport's OpenAPI document (the server's routes).

Run: .venv/bin/python scripts/gen_docs.py (or `make docs`). Tests fail when these parts are stale.
"""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from modelport.api.openapi_markdown import BEGIN, END
from modelport.client.cli.main import app
from modelport.config import SETTINGS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def cli_help() -> None:
    path = DOCS / "cli.md"
    text = path.read_text()
    runner = CliRunner()
    groups = ["endpoints", "tokens", "secrets", "users", "groups", "service-principals", "tables", "features"]
    groups.append("batch")
    groups.append("monitors")
    extra = (["features", "functions"], ["usage"], ["batch", "run"], ["serve"])
    for args in ([], *([group] for group in groups), *extra):
        title = " ".join(["modelport", *args, "--help"])
        out = runner.invoke(app, [*args, "--help"], prog_name="modelport", env={"COLUMNS": "100"}).stdout
        pattern = re.compile(r"(### `" + re.escape(title) + r"`\n\n```text\n)(.*?)(```)", re.S)
        text, n = pattern.subn(lambda m, out=out: m.group(1) + out.rstrip() + "\n" + m.group(3), text)
        assert n == 1, title
    path.write_text(text)


def configuration_table() -> None:
    path = DOCS / "configuration.md"
    text = path.read_text()
    rows = []
    for s in SETTINGS:
        flag = f"`{s.cli_flag}`" if s.flag else "(variable only)"
        default = s.default if s.default != "" else "(empty)"
        rows.append(f"| `{s.name}` | {flag} | `{s.env_var}` | `{default}` | {s.help} |")
    header = "| setting | flag | environment variable | default | meaning |\n|---|---|---|---|---|\n"
    text = re.sub(re.escape(header) + r"(\|.*\|\n)+", header + "\n".join(rows) + "\n", text)
    path.write_text(text)


def api_reference() -> str:
    """The route reference as docs/api.md holds it, from the document of the server's routes."""
    from modelport.api.app import ModelportApp
    from modelport.api.openapi_document import build_document, route_table
    from modelport.api.openapi_markdown import render
    from modelport.config import Settings

    return render(build_document(route_table(ModelportApp(Settings()).api.routes)))


def write_api_reference() -> None:
    path = DOCS / "api.md"
    text = path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + api_reference() + text[end:])


if __name__ == "__main__":
    cli_help()
    configuration_table()
    write_api_reference()
