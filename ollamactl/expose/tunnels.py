"""The seed's tunnel commands (ngrok, cloudflared) with the Host header the server accepts.

    ngrok http 11434 --host-header="localhost:11434"
    cloudflared tunnel --url http://localhost:11434 --http-host-header="localhost:11434"

A tunnel publishes the API on the internet; the server has no authentication, so point the
tunnel at an nginx front that has (``--target``) or keep the URL to yourself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ollamactl import settings
from ollamactl.context import Context
from ollamactl.errors import CommandFailed, OllamactlError, UsageError
from ollamactl.system import cmd


@dataclass(frozen=True)
class Tool:
    name: str
    version_argv: tuple[str, ...]
    install_hint: str


NGROK = Tool("ngrok", ("ngrok", "version"),
             "install it from https://ngrok.com/download, then `ngrok config add-authtoken ...`")
CLOUDFLARED = Tool("cloudflared", ("cloudflared", "--version"),
                   "install it from https://developers.cloudflare.com/cloudflare-one/"
                   "connections/connect-networks/downloads/")
TOOLS = {tool.name: tool for tool in (NGROK, CLOUDFLARED)}


def target_address(value: str | None, environ: dict[str, str]) -> settings.HostAddress:
    """What the tunnel forwards to: ``value``, else OLLAMA_HOST as a client reads it.

    Raises:
        UsageError: ``value`` is not an address.
    """
    if value is None:
        return settings.host_from(environ)
    try:
        return settings.parse_host(value)
    except settings.Invalid as exc:
        raise UsageError(f"invalid target {value!r}: {exc}") from None


def host_header(target: settings.HostAddress) -> str:
    return f"localhost:{target.port}"


def tunnel_argv(tool: Tool, target: settings.HostAddress) -> tuple[str, ...]:
    """The seed's command for ``tool``, forwarding to ``target``."""
    if tool is NGROK:
        where = str(target.port) if target.is_loopback or target.is_all_interfaces \
            else target.hostport
        return ("ngrok", "http", where, f"--host-header={host_header(target)}")
    return ("cloudflared", "tunnel", "--url", target.client_url,
            f"--http-host-header={host_header(target)}")


def check_installed(ctx: Context, tool: Tool) -> str:
    """The tool's version line (``ngrok version`` / ``cloudflared --version``).

    Raises:
        OllamactlError: the tool is not installed or does not run.
    """
    try:
        result = ctx.runner.run(cmd(*tool.version_argv, why=f"is {tool.name} installed",
                                    mutates=False, timeout_s=10))
    except CommandFailed as exc:
        reason = "is not installed" if exc.returncode == 127 else "does not run"
        raise OllamactlError(f"{tool.name} {reason}", hint=tool.install_hint) from exc
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else tool.name


def exec_tunnel(argv: Sequence[str]) -> None:
    """Replace this process with the tunnel, so it owns the terminal and Ctrl-C stops it."""
    os.execvp(argv[0], list(argv))
