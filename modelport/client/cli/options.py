"""What every client command shares: the connection options, the output switch, the
way a command gets its SDK client, and reading a request document from a file.

Commands get their client from :func:`open_client`. It builds a
:class:`~modelport.client.sdk.ModelportClient` unless the click context object holds a
client factory (``CliRunner().invoke(app, args, obj=factory)``), which is how tests point
the CLI at an ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.client.sdk import DEFAULT_HOST, ModelportClient
from modelport.errors import InvalidParameterValue, MalformedRequest

__all__ = [
    "ClientFactory",
    "HostOption",
    "OutputFormat",
    "OutputOption",
    "TokenOption",
    "open_client",
    "read_document",
]

#: Builds a client from the ``--host`` and ``--token`` values (None: use the environment).
ClientFactory = Callable[[str | None, str | None], ModelportClient]


class OutputFormat(StrEnum):
    """How a command prints its result."""

    table = "table"
    json = "json"


HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help=f"URL of the modelport server. [env: MODELPORT_HOST]  [default: {DEFAULT_HOST}]",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token sent as 'Authorization: Bearer'. [env: MODELPORT_TOKEN]",
        show_default=False,
    ),
]
OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Print a text table or the server's JSON.", case_sensitive=False),
]


def open_client(ctx: typer.Context, host: str | None, token: str | None) -> ModelportClient:
    """The SDK client a command talks through; the caller closes it."""
    factory: ClientFactory = ctx.obj if callable(ctx.obj) else ModelportClient
    return factory(host, token)


def read_document(source: str) -> dict[str, Any]:
    """A JSON (or, with PyYAML installed, YAML) object from a file path, or stdin for ``-``."""
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidParameterValue(f"cannot read {source}: {exc.strerror or exc}") from exc
    return parse_document(text, source)


def parse_document(text: str, source: str) -> dict[str, Any]:
    """Parse a request document given on the command line; ``source`` names it in errors."""
    try:
        document = json.loads(text)
    except ValueError as json_error:
        document = _parse_yaml(text, source, json_error)
    if not isinstance(document, dict):
        raise InvalidParameterValue(f"{source}: expected a JSON object, got {type(document).__name__}")
    return document


def _parse_yaml(text: str, source: str, json_error: ValueError) -> Any:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise MalformedRequest(f"{source}: not valid JSON ({json_error})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MalformedRequest(f"{source}: neither valid JSON nor valid YAML ({exc})") from None
