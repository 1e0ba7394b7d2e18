"""Installing the nginx site: write it, `nginx -t`, reload; undo the write when nginx refuses it.

Layout, under ``--root``: Debian's ``/etc/nginx/sites-available/<name>.conf`` with a relative
link in ``sites-enabled/``, else ``/etc/nginx/conf.d/<name>.conf`` (RHEL, nginx.org packages).

With a staging root (``--root DIR``) that holds its own ``etc/nginx/nginx.conf``, ``nginx -t``
and the reload use that file (``-c``), so a staged nginx is tested and signalled, never the
host's; without one, nothing is tested or reloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamactl.context import Context
from ollamactl.errors import CommandFailed, OllamactlError, UsageError
from ollamactl.expose.nginx import FrontSpec, read_marker, render_site
from ollamactl.system import cmd

NGINX_DIR = "/etc/nginx"
#: Where an enabled site may live; read by doctor through :func:`installed_fronts`.
ENABLED_DIRS = (f"{NGINX_DIR}/sites-enabled", f"{NGINX_DIR}/conf.d")


@dataclass
class InstallReport:
    """What ``expose nginx --install`` did (or, in dry-run, would do)."""

    path: str
    link: str | None = None
    changed: bool = False
    tested: bool = False
    reloaded: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SitePaths:
    file: Path
    link: Path | None  # sites-enabled link (Debian layout only)


def site_paths(ctx: Context, name: str) -> SitePaths:
    """Where the site goes under ``ctx.root``.

    Raises:
        UsageError: no nginx configuration directory there.
    """
    available = ctx.path(f"{NGINX_DIR}/sites-available")
    if available.is_dir():
        return SitePaths(available / f"{name}.conf",
                         ctx.path(f"{NGINX_DIR}/sites-enabled/{name}.conf"))
    conf_d = ctx.path(f"{NGINX_DIR}/conf.d")
    if conf_d.is_dir():
        return SitePaths(conf_d / f"{name}.conf", None)
    raise UsageError(f"no nginx configuration directory under {ctx.path(NGINX_DIR)}",
                     hint="install nginx first (Debian/Ubuntu: apt-get install nginx)")


def nginx_argv(ctx: Context, *args: str) -> tuple[str, ...] | None:
    """``nginx <args>`` for the nginx of ``ctx.root``; None for a staging root without one."""
    if ctx.root == Path("/"):
        return ("nginx", *args)
    conf = ctx.path(f"{NGINX_DIR}/nginx.conf")
    if not conf.is_file():
        return None
    return ("nginx", *args, "-e", "stderr", "-c", str(conf))


def install_site(ctx: Context, spec: FrontSpec) -> InstallReport:
    """Put the site for ``spec`` in place; test it with ``nginx -t``; reload nginx.

    When ``nginx -t`` fails, the previous file (or none) is put back and nothing is reloaded.

    Raises:
        UsageError: no nginx configuration directory; OllamactlError: nginx not installed.
        CommandFailed: nginx rejected the configuration (its last error line is shown).
    """
    paths = site_paths(ctx, spec.name)
    report = InstallReport(path=str(paths.file), link=str(paths.link) if paths.link else None)
    test_argv = nginx_argv(ctx, "-t", "-q")
    if test_argv is not None:
        _require_nginx(ctx)
    previous = (paths.file.read_bytes(), paths.file.stat().st_mode & 0o7777) \
        if paths.file.is_file() else None
    mode = 0o600 if spec.auth == "bearer" else 0o644  # bearer tokens are in the file
    report.changed = ctx.runner.write_file(paths.file, render_site(spec), mode=mode,
                                           why="nginx site in front of the Ollama API")
    relative = Path("..") / paths.file.parent.name / paths.file.name
    linked_now = paths.link is not None and not (paths.link.is_symlink()
                                                 and Path(paths.link.readlink()) == relative)
    if linked_now:
        ctx.runner.run(cmd("ln", "-sfn", str(relative), str(paths.link), why="enable the site"))
        report.changed = True
    if not report.changed:
        report.notes.append("the site is already in place; nginx was not reloaded")
        return report
    if test_argv is None:
        report.notes.append(f"no {NGINX_DIR}/nginx.conf under {ctx.root}: staged only, "
                            "not tested or reloaded")
        return report
    try:
        ctx.runner.run(cmd(*test_argv, why="check the whole nginx configuration"))
    except CommandFailed as exc:
        _put_back(ctx, paths, previous, unlink=linked_now)
        raise CommandFailed(exc.argv, exc.returncode, exc.stderr_tail,
                            hint=f"nginx refused the configuration; {paths.file} was put back "
                                 "as it was and nginx was not reloaded") from exc
    report.tested = True
    reload_argv = nginx_argv(ctx, "-s", "reload")
    assert reload_argv is not None
    try:
        ctx.runner.run(cmd(*reload_argv, why="load the new site"))
    except CommandFailed as exc:
        report.notes.append(f"nginx did not reload ({exc.stderr_tail.splitlines()[-1:] or '?'});"
                            " start it: `systemctl start nginx` (or `nginx`)")
        return report
    report.reloaded = True
    return report


def _require_nginx(ctx: Context) -> None:
    try:
        ctx.runner.run(cmd("nginx", "-v", why="is nginx installed", mutates=False))
    except CommandFailed as exc:
        raise OllamactlError("nginx is not installed (or not on PATH)",
                         hint="Debian/Ubuntu: apt-get install nginx") from exc


def _put_back(ctx: Context, paths: SitePaths, previous: tuple[bytes, int] | None, *,
              unlink: bool) -> None:
    """Undo the write after ``nginx -t`` refused it: the old content (or no file), and no link
    if this install made it."""
    if previous is not None:
        content, mode = previous
        ctx.runner.write_file(paths.file, content, mode=mode, why="put the previous site back",
                              backup=False)
    else:
        ctx.runner.remove(paths.file, why="remove the refused site")
    if unlink and paths.link is not None:
        ctx.runner.remove(paths.link, why="remove the refused site's link")


def installed_fronts(ctx: Context) -> list[dict[str, Any]]:
    """Markers of the enabled sites ollamactl rendered (each with its ``path``)."""
    fronts = []
    for directory in ENABLED_DIRS:
        folder = ctx.path(directory)
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                with entry.open(encoding="utf-8", errors="replace") as handle:
                    head = "".join(handle.readline() for _ in range(5))
            except OSError:
                continue
            marker = read_marker(head)
            if marker is not None:
                fronts.append({**marker, "path": str(entry)})
    return fronts
