"""Every code block of README.md and docs/*.md, run in order against a real server.

The server is started as ``make run`` starts it (``modelport serve --demo``, system endpoints
on) with HOME set to a scratch folder whose ``.modelport`` is its data directory, so the docs'
``~/.modelport/admin-token`` is the test server's token. The docs' ``127.0.0.1:8080`` becomes
the test server's address. Each document runs in its own scratch folder, where ``.venv``
points at this interpreter's virtual environment as it does in the project root. The rules
for doc authors are in docs/README.md; the harness is tests/support/docs.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess
from tests.support.docs import DocRunner, parse_blocks, venv_env

ROOT = Path(__file__).resolve().parents[2]
#: README first (the tour), then the other pages; each may rely on what ``make run`` sets up,
#: never on what another page creates.
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_document_runs_as_written(document: str, docs_server: ServerProcess, home: Path) -> None:
    blocks = parse_blocks((ROOT / document).read_text(), document)
    workdir = home / "work" / document.replace("/", "_")
    workdir.mkdir(parents=True)
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    address = f"127.0.0.1:{docs_server.port}"
    runner = DocRunner(
        workdir=workdir,
        env=venv_env(home),
        substitutions={"127.0.0.1:8080": address, "localhost:8080": address},
    )
    runner.run(blocks)
    for block in runner.skipped:
        print(f"not run: {block.where}: {block.skip_reason}")
    runnable = [b for b in blocks if b.lang in ("bash", "console", "python")]
    assert len(runner.ran) + len(runner.skipped) == len(runnable)
