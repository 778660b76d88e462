"""``modelport serve``: start the server, with one flag per setting in :data:`SETTINGS`.

The flags are derived from :mod:`modelport.config`, never listed here, so a new setting
gets its flag, help text and ``[env: ...]`` note without touching the CLI. Every flag
defaults to None: an absent flag leaves the value to ``Settings.load``, which applies the
``MODELPORT_*`` environment and then the declared default.

This is the one command that builds the server rather than talking to it, so it imports
``modelport.api`` — inside the command, so that the client commands never load it.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from modelport.config import SETTINGS, Settings, SettingSpec
from modelport.errors import InvalidParameterValue

__all__ = ["serve", "serve_parameters"]


def _shown_default(spec: SettingSpec) -> str:
    if spec.type is bool:
        return "on" if spec.default else "off"
    if spec.default == "":
        return "empty"
    return str(spec.default)


def _parameter(spec: SettingSpec) -> inspect.Parameter:
    declaration = spec.cli_flag
    if spec.type is bool:
        declaration = f"{spec.cli_flag}/--no-{spec.cli_flag.removeprefix('--')}"
    option = typer.Option(
        declaration,
        help=f"{spec.help} [env: {spec.env_var}]  [default: {_shown_default(spec)}]",
        show_default=False,
    )
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[spec.type | None, option],
    )


def serve_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per setting that has a flag, in declaration order."""
    return [_parameter(spec) for spec in SETTINGS if spec.flag]


def serve(**overrides: Any) -> None:
    """Start the modelport server: control plane, gateway, registry and UI on one port.

    Flags override MODELPORT_* variables, which override the defaults. The first start
    creates an admin token and writes it to <data-dir>/admin-token.
    """
    try:
        settings = Settings.load(overrides)
    except ValueError as exc:
        raise InvalidParameterValue(f"invalid setting: {exc}") from exc
    from modelport.api.server import run

    on_started = None
    if settings.demo:
        from modelport.client.demo import seed_demo

        on_started = seed_demo
    run(settings, on_started=on_started)


serve.__signature__ = inspect.Signature(serve_parameters())  # type: ignore[attr-defined]
