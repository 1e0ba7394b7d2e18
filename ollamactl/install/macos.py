"""macOS install: a per-user LaunchAgent, or with ``--system`` a LaunchDaemon run as ``_ollama``.

Agent: ``~/Library/LaunchAgents/com.ollamactl.ollama.plist``, logs in ``~/.ollama/logs``, models
in ``~/.ollama/models``, loaded into ``gui/<uid>``. Daemon (headless Macs): the hidden
``_ollama`` account made with dscl, home ``/usr/local/var/ollama``, the plist in
``/Library/LaunchDaemons``, loaded into ``system``. Running install again is an update: the job
is unloaded, the plist re-rendered with the user's ``EnvironmentVariables`` and foreign keys
kept, and loaded again.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ollamactl.context import Context
from ollamactl.errors import OllamactlError, PrivilegeError, ServiceError, UsageError
from ollamactl.install import (
    InstallOptions,
    InstallReport,
    UninstallPlan,
    holds,
    plan_removal,
    runtime,
)
from ollamactl.install.manifest import Manifest
from ollamactl.install.platforms import (
    LocalPath,
    ensure_dir,
    remove_created,
    save_manifest,
)
from ollamactl.service import health, launchd
from ollamactl.service.launchd import (
    DAEMON_HOME,
    DAEMON_USER,
    SERVER_PATH,
    LaunchdLayout,
    LaunchdManager,
    PlistSpec,
    dump_plist,
    is_ollamactl_plist,
    parse_plist,
    render_plist,
)
from ollamactl.system import cmd

AGENT, DAEMON = "launchd-agent", "launchd-daemon"
#: macOS keeps ids below 500 for hidden service accounts; we take the first free one here.
SERVICE_IDS = range(200, 400)


def _local(ctx: Context) -> LocalPath:
    return lambda path: ctx.path(str(path))


def load_manifest(ctx: Context, layout: LaunchdLayout) -> Manifest | None:
    try:
        return Manifest.from_json(ctx.path(layout.manifest_path).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise OllamactlError(f"the install manifest {layout.manifest_path} is damaged: {exc}"
                             ) from exc


def install(ctx: Context, options: InstallOptions) -> InstallReport:
    """Install or update the job (see the module docstring)."""
    layout = LaunchdLayout(launchd.login_account(), system=options.system)
    existing = load_manifest(ctx, layout)
    backend = DAEMON if options.system else AGENT
    notes = _prechecks(ctx, options, layout, existing)
    record = existing or Manifest(
        backend=backend, user=DAEMON_USER if options.system else layout.account.name,
        group=DAEMON_USER if options.system else "", models_dir=layout.models_dir)
    report = InstallReport(backend, update=existing is not None, notes=notes)
    manager = LaunchdManager(ctx, layout)
    local = _local(ctx)
    if not manager.staged:
        manager.bootout()           # an update, or a job loaded by hand: bootstrap needs it out
    ensure_dir(ctx, record, PurePosixPath(layout.state_dir), local, why="ollamactl's records")
    if options.system:
        _daemon_account(ctx, record, report, staged=manager.staged)
    ensure_dir(ctx, record, PurePosixPath(layout.log_path).parent, local, why="server.log")
    ensure_dir(ctx, record, PurePosixPath(layout.models_dir), local, why="models")
    if options.system and not manager.staged:
        ctx.runner.run(cmd("chown", "-R", f"{DAEMON_USER}:{DAEMON_USER}", DAEMON_HOME,
                           why="the daemon's home, logs and models belong to it"))
    ensure_dir(ctx, record, PurePosixPath(layout.plist).parent, local, why="launchd jobs")
    record.exec_argv = runtime.current().serve_argv()
    write_plist(ctx, record, layout)
    save_manifest(ctx, record, PurePosixPath(layout.manifest_path), local)
    if manager.staged:
        report.notes.append(f"staged under {ctx.root}: nothing was loaded; on the Mac: "
                            f"launchctl bootstrap {layout.domain} {layout.plist}")
    else:
        manager.bootstrap()
        if not ctx.dry_run and options.wait_s > 0:
            report.await_server(health.client_url(manager.env_store().read()), options.wait_s)
    report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
    return report


def _prechecks(ctx: Context, options: InstallOptions, layout: LaunchdLayout,
               existing: Manifest | None) -> list[str]:
    if options.system and not ctx.host.is_root and not ctx.dry_run:
        raise PrivilegeError("a LaunchDaemon needs root: it creates the _ollama account",
                             hint="run it with sudo, or drop --system for a per-user agent")
    other = LaunchdLayout(layout.account, system=not layout.system)
    if load_manifest(ctx, other) is not None:
        raise OllamactlError(f"already installed as a {'daemon' if other.system else 'agent'}",
                             hint="run `ollamactl uninstall` first")
    notes = [f"host: {ctx.host.describe()}"]
    plist = ctx.path(layout.plist)
    if plist.exists() and not is_ollamactl_plist(parse_plist(plist.read_bytes(),
                                                             source=layout.plist)):
        raise ServiceError(f"{layout.plist} is not ollamactl's (its Label differs)",
                           hint="move it away first")
    if not layout.system and ctx.host.is_root:
        notes.append("installing a LaunchAgent for root; on a headless Mac use --system")
    for found in launchd.competing_servers(ctx, layout.account):
        notes.append(f"another Ollama server is set up here ({found}); both want port 11434: "
                     "quit or remove one")
    return notes


def write_plist(ctx: Context, record: Manifest, layout: LaunchdLayout) -> bool:
    """Render the plist; on update, keep its EnvironmentVariables and every foreign key."""
    environment = [("PATH", SERVER_PATH)]
    if layout.system:
        environment.append(("HOME", DAEMON_HOME))
    spec = PlistSpec(tuple(record.exec_argv), layout.log_path, layout.home, tuple(environment),
                     user_name=DAEMON_USER if layout.system else "",
                     group_name=DAEMON_USER if layout.system else "")
    rendered = render_plist(spec)
    path = ctx.path(layout.plist)
    if not path.exists():
        record.created_path(layout.plist)
        return ctx.runner.write_file(path, rendered, mode=0o644, why="the launchd job")
    old = parse_plist(path.read_bytes(), source=layout.plist)
    new = parse_plist(rendered.encode(), source="the rendered plist")
    merged = {**old, **new,
              "EnvironmentVariables": {**new["EnvironmentVariables"],
                                       **(old.get("EnvironmentVariables") or {})}}
    if merged == old:
        return False
    return ctx.runner.write_file(path, dump_plist(merged), mode=0o644,
                                 why="the launchd job (settings kept)")


# -- the daemon's account (dscl) ---------------------------------------------------------------

def _dscl_ids(ctx: Context, kind: str, attribute: str) -> dict[str, int]:
    result = ctx.runner.run(cmd("dscl", ".", "-list", f"/{kind}", attribute, mutates=False,
                                why=f"ids in use ({kind})"))
    ids = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            ids[parts[0]] = int(parts[1])
    return ids


def _daemon_account(ctx: Context, record: Manifest, report: InstallReport, *,
                    staged: bool) -> None:
    """The hidden ``_ollama`` user and group, created with dscl where missing."""
    if staged:
        report.notes.append(f"staged: the {DAEMON_USER} account is made with dscl on the Mac")
        return
    users = _dscl_ids(ctx, "Users", "UniqueID")
    groups = _dscl_ids(ctx, "Groups", "PrimaryGroupID")
    if DAEMON_USER in users and DAEMON_USER in groups:
        return
    taken = set(users.values()) | set(groups.values())
    free = next((i for i in SERVICE_IDS if i not in taken), None)
    if free is None:
        raise OllamactlError(f"no free id in {SERVICE_IDS.start}-{SERVICE_IDS.stop - 1} for "
                             f"the {DAEMON_USER} account")
    gid = groups.get(DAEMON_USER, free)
    if DAEMON_USER not in groups:
        group = f"/Groups/{DAEMON_USER}"
        for args in ((), ("PrimaryGroupID", str(gid)), ("RealName", "Ollama service"),
                     ("Password", "*")):
            ctx.runner.run(cmd("dscl", ".", "-create", group, *args,
                               why=f"the {DAEMON_USER} group"))
        record.created_group(DAEMON_USER)
    if DAEMON_USER not in users:
        user = f"/Users/{DAEMON_USER}"
        for args in ((), ("UniqueID", str(free)), ("PrimaryGroupID", str(gid)),
                     ("UserShell", "/usr/bin/false"), ("NFSHomeDirectory", DAEMON_HOME),
                     ("RealName", "Ollama service"), ("Password", "*"), ("IsHidden", "1")):
            ctx.runner.run(cmd("dscl", ".", "-create", user, *args,
                               why=f"the {DAEMON_USER} user (no login)"))
        record.created_user(DAEMON_USER)


# -- uninstall ---------------------------------------------------------------------------------

def _installed(ctx: Context) -> tuple[LaunchdLayout, Manifest]:
    layout = LaunchdLayout.detect(ctx, launchd.login_account())
    record = load_manifest(ctx, layout)
    if record is None:
        raise UsageError(f"no ollamactl install here (no {layout.manifest_path})",
                         hint="only what `ollamactl install` recorded can be uninstalled")
    return layout, record


def plan_uninstall(ctx: Context, *, purge: bool) -> UninstallPlan:
    layout, record = _installed(ctx)
    return plan_removal(record, ctx.path(record.models_dir),
                        [f"unload the job ({layout.target})"], purge=purge)


def uninstall(ctx: Context, plan: UninstallPlan) -> list[str]:
    """Unload, drop the session copies of our settings, remove what install created."""
    from ollamactl import settings

    record = plan.record
    layout = LaunchdLayout(launchd.login_account(), system=record.backend == DAEMON)
    manager = LaunchdManager(ctx, layout)
    if not manager.staged:
        manager.bootout()
        if not layout.system:
            for name in manager.env_store().read():
                if name in settings.SETTINGS:
                    ctx.runner.run(cmd("launchctl", "unsetenv", name,
                                       why="the session copy `env set` made"))
    plist = ctx.path(layout.plist)
    ctx.runner.remove(plist.with_name(plist.name + ".bak"), why="backup of the plist")
    owned = {layout.state_dir, str(PurePosixPath(layout.log_path).parent)}
    if not plan.keep_models:
        owned.add(record.models_dir)
    remove_created(ctx, record, _local(ctx), PurePosixPath, owned_trees=owned,
                   keep=lambda p: plan.keep_models and holds(p, record.models_dir,
                                                             PurePosixPath))
    if not manager.staged:
        for name in record.created_users:
            ctx.runner.run(cmd("dscl", ".", "-delete", f"/Users/{name}", why="created by install"))
        for name in record.created_groups:
            ctx.runner.run(cmd("dscl", ".", "-delete", f"/Groups/{name}",
                               why="created by install"))
    return [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
