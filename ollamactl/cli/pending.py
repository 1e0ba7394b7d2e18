"""Commands whose implementation has not landed yet: each says so and exits 2."""

from __future__ import annotations

from collections.abc import Callable

import typer

from ollamactl.errors import NotAvailableYet

PENDING: dict[str, str] = {
}

_LOOSE = {"allow_extra_args": True, "ignore_unknown_options": True}


def _make(name: str, help_text: str) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        raise NotAvailableYet(name)

    command.__doc__ = help_text + " (not available yet)"
    command.__name__ = f"pending_{name}"
    return command


def register(app: typer.Typer) -> None:
    for name, help_text in PENDING.items():
        app.command(name, context_settings=_LOOSE, add_help_option=False)(_make(name, help_text))
