"""``modelport migrate``: move this machine's installation to PostgreSQL and a shared artifacts folder.

Like ``serve``, and unlike the client commands, it works on the machine's files and databases
rather than through a server (the servers must be stopped): the work is
:func:`modelport.control.migration.migrate`, imported inside the command so that the client
commands never load it.
"""

from __future__ import annotations

import importlib
import logging
from typing import Annotated

import typer

from modelport.config import Settings
from modelport.errors import InvalidParameterValue

__all__ = ["migrate"]


def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The PostgreSQL database to move to (postgresql://user@host:5432/db): empty, or "
            "the current --store to move only the registry and the artifacts.",
            show_default=False,
        ),
    ],
    artifacts_root: Annotated[
        str,
        typer.Option(
            "--artifacts-root",
            help="A folder every server reaches (a shared path) to copy <data-dir>/artifacts to, "
            "empty or new. Not given: the artifacts stay in the data directory.  [default: none]",
            show_default=False,
        ),
    ] = "",
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            help="The data directory of the installation to move.  [env: MODELPORT_DATA_DIR]  "
            "[default: ~/.modelport]",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str,
        typer.Option(
            "--store",
            help="The store the installation uses now (its servers' --store): empty for the "
            "SQLite database of the data directory.  [default: empty]",
            show_default=False,
        ),
    ] = "",
) -> None:
    """Move an installation to PostgreSQL and a shared artifacts folder (its servers stopped).

    Copies every row of the store and of the embedded registry (<data-dir>/mlflow.db) into the
    PostgreSQL database given by --to (the registry into its schema mlflow), and the artifacts
    to --artifacts-root; then checks row counts, artifact digests and secrets. The source is
    never changed. Start the servers afterwards with --store and --artifacts-root set to the
    same values and the same secrets key.
    """
    try:
        # The store and the artifacts folder are the ones given here, never MODELPORT_STORE's or
        # MODELPORT_ARTIFACTS_ROOT's (which may already name the target).
        source = Settings.load({"data_dir": data_dir, "store": store, "artifacts_root": ""})
    except ValueError as exc:
        raise InvalidParameterValue(f"invalid setting: {exc}") from exc
    from modelport.control.migration import migrate as run

    # MLflow logs each of its schema steps at INFO, and sets its logger's level when imported:
    # imported first, then quieted (the command reports its own progress).
    importlib.import_module("mlflow")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    run(source, to, artifacts_root, report=typer.echo)
    shared = f" --artifacts-root {artifacts_root}" if artifacts_root else ""
    typer.echo(f"Done. Start the servers with --store <the --to URL>{shared} and the same secrets key.")
