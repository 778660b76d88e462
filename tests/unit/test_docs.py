"""Docs that must not drift from the code."""

from __future__ import annotations

from pathlib import Path

from modelport.config import SETTINGS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_doc_lists_every_setting_with_flag_variable_and_help() -> None:
    text = (DOCS / "configuration.md").read_text()
    for spec in SETTINGS:
        assert f"`{spec.env_var}`" in text, spec.name
        assert spec.help in text, spec.name
        if spec.flag:
            assert f"`{spec.cli_flag}`" in text, spec.name


def test_api_reference_is_rendered_from_the_current_openapi_document() -> None:
    from scripts.gen_docs import api_reference

    text = (DOCS / "api.md").read_text()
    assert api_reference() in text, "docs/api.md's route reference is stale: run make docs"
