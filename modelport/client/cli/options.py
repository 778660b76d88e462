"""What every client command shares: the connection options, the output switch, the
way a command gets its SDK client, and reading a request document from a file.

Commands get their client from :func:`open_client`. It builds a
:class:`~modelport.client.sdk.ModelportClient` unless the click context object holds a
client factory (``CliRunner().invoke(app, args, obj=factory)``), which is how tests point
the CLI at an ``httpx.MockTransport``.

``-o/--output`` is accepted by the root command (``modelport -o json endpoints list``) and by
every client command; the command's own option wins when both are given.
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
    "ROOT_OUTPUT",
    "ClientFactory",
    "HostOption",
    "OutputFormat",
    "OutputOption",
    "TokenOption",
    "open_client",
    "parse_document",
    "read_document",
]

#: Name of the root command's ``-o/--output`` parameter in its click context.
ROOT_OUTPUT = "output"

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


def _output_or_root(ctx: typer.Context, param: typer.CallbackParam, value: OutputFormat) -> OutputFormat:
    """The command's ``--output`` when given, else the root command's, else the default."""
    source = ctx.get_parameter_source(param.name) if param.name else None
    if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
        return value
    root: OutputFormat | None = ctx.find_root().params.get(ROOT_OUTPUT)
    return value if root is None else OutputFormat(root)


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        help="Print a text table or the server's JSON (overrides 'modelport -o').",
        case_sensitive=False,
        callback=_output_or_root,
    ),
]


def open_client(ctx: typer.Context, host: str | None, token: str | None) -> ModelportClient:
    """The SDK client a command talks through; the caller closes it."""
    factory: ClientFactory = ctx.obj if callable(ctx.obj) else ModelportClient
    return factory(host, token)


def read_document(source: str, *, records: bool = False) -> dict[str, Any]:
    """A JSON (or, with PyYAML installed, YAML) object from a file path, or stdin for ``-``.

    With ``records``, a list of objects is accepted too and returned as
    ``{"dataframe_records": [...]}`` (see :func:`parse_document`).
    """
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidParameterValue(f"cannot read {source}: {exc.strerror or exc}") from exc
    return parse_document(text, source, records=records)


def parse_document(text: str, source: str, *, records: bool = False) -> dict[str, Any]:
    """Parse a request document given on the command line; ``source`` names it in errors.

    The document must be an object. With ``records`` (scoring requests) a list of objects,
    one per row, is accepted as well and wrapped as ``{"dataframe_records": [...]}``.
    """
    try:
        document = json.loads(text)
    except ValueError as json_error:
        document = _parse_yaml(text, source, json_error)
    if isinstance(document, dict):
        return document
    if not records:
        raise InvalidParameterValue(f"{source}: expected a JSON object, got {type(document).__name__}")
    if isinstance(document, list) and all(isinstance(row, dict) for row in document):
        return {"dataframe_records": document}
    got = type(document).__name__
    if isinstance(document, list):
        got = "a list holding " + ", ".join(
            sorted({type(r).__name__ for r in document if not isinstance(r, dict)})
        )
    raise InvalidParameterValue(f"{source}: expected a JSON object or a list of records (objects), got {got}")


def _parse_yaml(text: str, source: str, json_error: ValueError) -> Any:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise MalformedRequest(f"{source}: not valid JSON ({json_error})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MalformedRequest(f"{source}: neither valid JSON nor valid YAML ({exc})") from None
