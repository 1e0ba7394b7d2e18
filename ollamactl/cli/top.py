"""`ollamactl top [HOST...]`: a live view of one server or a fleet (curses on a terminal, plain
lines otherwise)."""

from __future__ import annotations

import os
import sys

import typer

from ollamactl import fleet, settings
from ollamactl.errors import UsageError


def top(
    hosts: list[str] | None = typer.Argument(
        None, metavar="[HOST[:PORT]]...",
        help="Servers or fronts, as `fleet status` takes them (default: OLLAMA_HOST)."),
    interval: float = typer.Option(1.0, "--interval", "-n", metavar="SECONDS",
                                   help="Seconds between refreshes."),
    count: int | None = typer.Option(None, "--count", "-c", metavar="N",
                                     help="Stop after N refreshes (implies plain lines)."),
    batch: bool = typer.Option(False, "--batch", "-b",
                               help="Plain lines even on a terminal (as `top -b`)."),
    timeout: float = typer.Option(2.0, "--timeout", metavar="SECONDS",
                                  help="Per-request timeout for each host."),
    token: str | None = typer.Option(None, "--token", envvar="OLLAMACTL_FLEET_TOKEN",
                                     help="Bearer token for hosts behind an nginx front."),
) -> None:
    """Loaded models, where they run, queue, tokens/s, TTFT and memory, every second.

    Reads /api/ps and /metrics. On a terminal: a full-screen view, `q` quits. Otherwise (or
    with --batch): one timestamped line per model per refresh.
    """
    from ollamactl.top.model import Top
    from ollamactl.top.screen import can_draw, run_plain, run_screen

    if interval < 0.1:
        raise UsageError(f"--interval must be at least 0.1 seconds, got {interval:g}")
    if count is not None and count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    addresses = fleet.parse_hosts(hosts) if hosts else [settings.host_from(os.environ)]
    environ = dict(os.environ)
    with Top(addresses, timeout_s=timeout, token=token) as watched:
        if not batch and count is None and can_draw(sys.stdout, sys.stdin, environ):
            code = run_screen(watched, interval_s=interval, use_color="NO_COLOR" not in environ)
        else:
            code = run_plain(watched, interval_s=interval, count=count)
    if code:
        raise typer.Exit(code)
