"""The ``modelport`` command: the root group, its options, its sub-commands and the one error handler.

Client commands talk to the server only through :mod:`modelport.client.sdk`; ``serve``
starts the server. Whatever a command raises is printed as one line on stderr,
``Error: <ERROR_CODE>: <message>``, with exit status 1 — never as a traceback: a
:class:`~modelport.errors.ModelportError` as it is, anything else through
:func:`as_modelport_error`. Usage mistakes stay the parser's (exit status 2).

The root takes ``--version`` and ``-o/--output``; the latter sets the output format of the
sub-command unless the sub-command is given its own ``-o`` (see
:mod:`modelport.client.cli.options`).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import httpx
import typer
from typer.core import TyperGroup

from modelport.client.cli import batch, endpoints, features, principals, secrets, tables, tokens
from modelport.client.cli import monitors as monitor_commands
from modelport.client.cli import rollouts as rollout_commands
from modelport.client.cli.endpoint_events import events as endpoint_events
from modelport.client.cli.migrate import migrate
from modelport.client.cli.options import OutputFormat
from modelport.client.cli.rollouts_compare import compare, replay
from modelport.client.cli.serve import serve
from modelport.client.cli.status import status
from modelport.errors import InvalidParameterValue, ModelportError, TemporarilyUnavailable

__all__ = ["app", "as_modelport_error", "main"]


def as_modelport_error(exc: Exception) -> ModelportError:
    """The error to report for an exception a command raised.

    The SDK already translates the server's answers and failed connections; what is left
    is a host URL httpx refuses, an odd transport failure, a local OSError (files, a
    closed terminal) or a bug, reported with its type so that it can be searched for.
    """
    if isinstance(exc, ModelportError):
        return exc
    if isinstance(exc, httpx.InvalidURL):
        return InvalidParameterValue(f"invalid server URL: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return TemporarilyUnavailable(f"the request to the server failed: {type(exc).__name__}: {exc}")
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return ModelportError(f"{type(exc).__name__}: {first_line}")


class _ReportingGroup(TyperGroup):
    """The root group; every command runs inside its ``invoke``, so errors are caught here."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors, --help, explicit exits: the parser reports them
        except BrokenPipeError:
            # The reader of stdout went away (`| head`): stop quietly, and keep Python from
            # complaining about the unflushed stdout at exit.
            _silence_stdout()
            raise typer.Exit(code=1) from None
        except Exception as exc:
            error = as_modelport_error(exc)
            typer.echo(f"Error: {error.error_code}: {error.message}", err=True)
            raise typer.Exit(code=1) from None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test runner's buffer)
        pass


def _package_version() -> str:
    try:
        return version("modelport")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"modelport {_package_version()}")
        raise typer.Exit()


app = typer.Typer(
    name="modelport",
    cls=_ReportingGroup,
    help="modelport: self-hosted model serving with a Databricks-compatible REST API.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    output: Annotated[
        OutputFormat | None,
        typer.Option(
            "--output",
            "-o",
            help="Output of the client commands: a text table or the server's JSON "
            "(a command's own -o wins).  [default: table]",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """The root's options; ``output`` stays in the root context's params (under the name
    ``options.ROOT_OUTPUT``), where every command's ``-o`` option looks for it."""


endpoints.app.command("events", short_help="An endpoint's event log (updates, rollouts, replicas).")(
    endpoint_events
)
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(tokens.app, name="tokens")
app.add_typer(secrets.app, name="secrets")
app.add_typer(principals.users, name="users")
app.add_typer(principals.groups, name="groups")
app.add_typer(principals.service_principals, name="service-principals")
app.add_typer(tables.app, name="tables")
app.add_typer(features.app, name="features")
app.add_typer(batch.app, name="batch")
app.add_typer(monitor_commands.app, name="monitors")
app.add_typer(rollout_commands.app, name="rollouts")
app.command("usage")(tables.usage)
app.command("compare", short_help="A candidate served entity against live traffic (inference table).")(
    compare
)
app.command("replay", short_help="Replay logged requests against a candidate served entity, then compare.")(
    replay
)
app.command("status", short_help="The server processes, the leader and the replicas.")(status)
app.command("serve", short_help="Start the modelport server.")(serve)
app.command("migrate", short_help="Move this installation to PostgreSQL and a shared artifacts folder.")(
    migrate
)


def main() -> None:
    """Entry point of the ``modelport`` console script."""
    app(prog_name="modelport")
