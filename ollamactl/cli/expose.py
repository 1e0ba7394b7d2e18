"""`ollamactl expose nginx|token|ngrok|cloudflared`: put the API in front of other machines."""

from __future__ import annotations

import secrets
from pathlib import Path

import typer

from ollamactl.cli.common import JsonOption, emit, environ, make_context
from ollamactl.context import Context
from ollamactl.errors import UsageError
from ollamactl.expose import nginx, tunnels
from ollamactl.output import Result
from ollamactl.system import Cmd

app = typer.Typer(help="Expose the API: an nginx front (auth, TLS, several hosts) or a tunnel.",
                  no_args_is_help=True)


def _read_tokens(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {(exc.strerror or exc)}") from None
    return nginx.parse_token_file(text, source=str(path))


def _require_file(context: Context, path: Path | None, what: str) -> None:
    """Files nginx reads on the target system must be there (under --root)."""
    if path is not None and not context.path(path).is_file():
        raise UsageError(f"{what} {context.path(path)} does not exist")


@app.command("nginx")
def nginx_site(
    ctx: typer.Context,
    backends: list[str] = typer.Option(
        ["127.0.0.1:11434"], "--backend", "-b", metavar="HOST[:PORT]",
        help="A server to balance across (repeat for several hosts)."),
    listen: str | None = typer.Option(None, "--listen", metavar="[HOST:]PORT",
                                      help="Where nginx listens (default 80, or 443 with TLS)."),
    server_name: str = typer.Option("_", "--server-name", help="nginx server_name."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="Bearer tokens, one per line (see `expose token`)."),
    htpasswd: Path | None = typer.Option(None, "--htpasswd",
                                         help="Basic auth with this htpasswd file instead."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="TLS certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="TLS private key (PEM)."),
    max_body_size: str = typer.Option("64m", "--max-body-size",
                                      help="Largest request body (model uploads need more)."),
    read_timeout: int = typer.Option(600, "--read-timeout", metavar="SECONDS",
                                     help="Longest silence from a backend."),
    max_fails: int = typer.Option(3, "--max-fails",
                                  help="Failures before a backend is skipped for a while."),
    fail_timeout: int = typer.Option(30, "--fail-timeout", metavar="SECONDS",
                                     help="How long a failing backend is skipped."),
    affinity: bool = typer.Option(False, "--affinity",
                                  help="Send each model to the same host (keeps it warm)."),
    name: str = typer.Option("ollama", "--name", help="Site name (file name in nginx)."),
    install: bool = typer.Option(False, "--install",
                                 help="Put it in place, `nginx -t`, reload nginx."),
    no_auth: bool = typer.Option(False, "--insecure-no-auth",
                                 help="Allow a front without auth on a non-loopback address."),
    as_json: bool = JsonOption,
) -> None:
    """Render the nginx site in front of the API; print it, or --install it."""
    context = make_context(ctx, as_json=as_json)
    spec = nginx.build_spec(
        name=name, listen=listen, backends=backends, server_name=server_name,
        tokens=_read_tokens(token_file) if token_file is not None else (), htpasswd=htpasswd,
        tls_cert=tls_cert, tls_key=tls_key, max_body_size=max_body_size,
        read_timeout_s=read_timeout, max_fails=max_fails, fail_timeout_s=fail_timeout,
        affinity=affinity)
    if not spec.authenticates and not spec.listen.is_loopback and not no_auth:
        raise UsageError(f"refusing to put the unauthenticated API on {spec.listen.hostport}",
                         hint="add --token-file or --htpasswd, listen on 127.0.0.1, or pass "
                              "--insecure-no-auth")
    site = nginx.render_site(spec)
    if not install:
        emit(Result(data={"site": site, **spec.marker()}, lines=[site.rstrip("\n")]),
             as_json=as_json)
        return
    for path, what in ((htpasswd, "htpasswd file"), (tls_cert, "TLS certificate"),
                       (tls_key, "TLS key")):
        _require_file(context, path, what)
    from ollamactl.expose.install import install_site

    report = install_site(context, spec)
    if context.dry_run:
        lines = ["plan (nothing was changed):", context.runner.render_plan()]
    else:
        lines = [context.runner.render_plan()] if report.changed else []
        if report.reloaded:
            lines.append(f"nginx reloaded: {spec.listen.client_url} -> "
                         + ", ".join(b.hostport for b in spec.backends))
    lines += [f"note: {n}" for n in report.notes]
    emit(Result(data={**report.__dict__, **spec.marker(), "dry_run": context.dry_run},
                lines=lines), as_json=as_json)


@app.command("token")
def token() -> None:
    """Print a new random bearer token (append it to the --token-file)."""
    typer.echo(secrets.token_urlsafe(32))


def _tunnel(ctx: typer.Context, tool: tunnels.Tool, target: str | None, run: bool,
            as_json: bool) -> None:
    context = make_context(ctx, as_json=as_json)
    address = tunnels.target_address(target, environ())
    argv = tunnels.tunnel_argv(tool, address)
    version = tunnels.check_installed(context, tool)
    typer.echo(f"warning: {tool.name} publishes {address.client_url} on the internet; unless "
               "that is an nginx front with auth, anyone with the URL can use the API",
               err=True)
    if run and not context.dry_run:
        tunnels.exec_tunnel(argv)
    emit(Result(data={"tool": tool.name, "version": version, "argv": list(argv),
                      "target": address.client_url},
                lines=[Cmd(argv).display]), as_json=as_json)


TargetOption = typer.Option(None, "--target", metavar="[HOST:]PORT",
                            help="What to forward to (default: OLLAMA_HOST, 127.0.0.1:11434).")
RunOption = typer.Option(False, "--run", help="Run the tunnel in the foreground.")


@app.command("ngrok")
def ngrok(ctx: typer.Context, target: str | None = TargetOption, run: bool = RunOption,
          as_json: bool = JsonOption) -> None:
    """The seed's `ngrok http 11434 --host-header=localhost:11434`."""
    _tunnel(ctx, tunnels.NGROK, target, run, as_json)


@app.command("cloudflared")
def cloudflared(ctx: typer.Context, target: str | None = TargetOption, run: bool = RunOption,
                as_json: bool = JsonOption) -> None:
    """The seed's `cloudflared tunnel --url ... --http-host-header=localhost:11434`."""
    _tunnel(ctx, tunnels.CLOUDFLARED, target, run, as_json)
