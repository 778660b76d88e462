"""The ``modelport`` command: the root group, its sub-commands and the one error handler.

Client commands talk to the server only through :mod:`modelport.client.sdk`; ``serve``
starts the server. Any :class:`~modelport.errors.ModelportError` raised by a command is
printed as ``Error: <ERROR_CODE>: <message>`` on stderr with exit status 1 — never as a
traceback.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from modelport.client.cli import endpoints, secrets, tables, tokens
from modelport.client.cli.serve import serve
from modelport.errors import ModelportError

__all__ = ["app", "main"]


class _ReportingGroup(TyperGroup):
    """The root group; every command runs inside its ``invoke``, so errors are caught here."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ModelportError as exc:
            typer.echo(f"Error: {exc.error_code}: {exc.message}", err=True)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    name="modelport",
    cls=_ReportingGroup,
    help="modelport: self-hosted model serving with a Databricks-compatible REST API.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(tokens.app, name="tokens")
app.add_typer(secrets.app, name="secrets")
app.add_typer(tables.app, name="tables")
app.command("usage")(tables.usage)
app.command("serve", short_help="Start the modelport server.")(serve)


def main() -> None:
    """Entry point of the ``modelport`` console script."""
    app(prog_name="modelport")
