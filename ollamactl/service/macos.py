"""The macOS platform unit: a per-user LaunchAgent, or with ``--system`` a LaunchDaemon run as
``_ollama``; the launchd mechanism is :mod:`.launchd`.

Agent: ``~/Library/LaunchAgents/com.ollamactl.ollama.plist``, logs in ``~/.ollama/logs``, models
in ``~/.ollama/models``, loaded into ``gui/<uid>``. Daemon (headless Macs): the hidden
``_ollama`` account made with dscl, home ``/usr/local/var/ollama``, the plist in
``/Library/LaunchDaemons``, loaded into ``system``. Which one a command acts on is what is
installed (the daemon when only its plist exists), or what ``install --system`` asks for.
Running install again is an update: the job is unloaded, the plist re-rendered with the user's
``EnvironmentVariables`` and foreign keys kept, and loaded again.

Doctor (users-and-security C39): a value set with ``launchctl setenv`` but missing from the
plist holds until the next reboot; a plist changed but not reloaded; the Ollama app or
Homebrew's service beside ours.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, cast

from ollamactl import settings
from ollamactl.client import client_url
from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.registry import check
from ollamactl.errors import OllamactlError, PrivilegeError, ServiceError, UsageError
from ollamactl.host import DARWIN
from ollamactl.install import (
    InstallOptions,
    InstallReport,
    UninstallPlan,
    ensure_dir,
    holds,
    manifest,
    plan_removal,
    remove_created,
    runtime,
    save_manifest,
)
from ollamactl.install.manifest import Manifest
from ollamactl.service import launchd
from ollamactl.service.base import Platform
from ollamactl.service.launchd import (
    DAEMON_HOME,
    DAEMON_USER,
    SERVER_PATH,
    LaunchdLayout,
    LaunchdManager,
    PlistEnvStore,
    PlistSpec,
    dump_plist,
    is_ollamactl_plist,
    parse_plist,
    render_plist,
)
from ollamactl.system import cmd

if TYPE_CHECKING:
    from ollamactl.context import Context
    from ollamactl.doctor.probe import Probe

AGENT, DAEMON = "launchd-agent", "launchd-daemon"
#: macOS keeps ids below 500 for hidden service accounts; we take the first free one here.
SERVICE_IDS = range(200, 400)


class Macos(Platform):
    """macOS: launchd runs the server, per user or (``--system``) for the machine."""

    name = "macos"
    family = "macOS"
    backends = (AGENT, DAEMON)

    @classmethod
    def applies(cls, ctx: Context, *, system: bool | None) -> bool:
        return ctx.host.os_name == DARWIN

    @property
    def layout(self) -> LaunchdLayout:
        """The flavour asked for, else the installed one (the daemon when only its plist
        exists)."""
        account = launchd.login_account()
        if self.system is None:
            return LaunchdLayout.detect(self.ctx, account)
        return LaunchdLayout(account, system=self.system)

    def service_manager(self) -> LaunchdManager:
        return LaunchdManager(self.ctx, self.layout)

    def env_store(self) -> PlistEnvStore | None:
        """The plist's EnvironmentVariables, once the job is installed."""
        manager = self.service_manager()
        if not manager.status().installed:
            return None
        return manager.env_store()

    # -- install --------------------------------------------------------------------------
    def install(self, options: InstallOptions) -> InstallReport:
        """Install or update the job (see the module docstring)."""
        ctx, layout = self.ctx, self.layout
        existing = self.load_manifest()
        backend = DAEMON if layout.system else AGENT
        notes = self._prechecks(options, layout)
        record = existing or Manifest(
            backend=backend, user=DAEMON_USER if layout.system else layout.account.name,
            group=DAEMON_USER if layout.system else "", models_dir=layout.models_dir)
        report = InstallReport(backend, update=existing is not None, notes=notes)
        manager = LaunchdManager(ctx, layout)
        local = self.local
        if not manager.staged:
            manager.bootout()       # an update, or a job loaded by hand: bootstrap needs it out
        ensure_dir(ctx, record, PurePosixPath(layout.state_dir), local, why="ollamactl's records")
        if layout.system:
            self._daemon_account(record, report, staged=manager.staged)
        ensure_dir(ctx, record, PurePosixPath(layout.log_path).parent, local, why="server.log")
        ensure_dir(ctx, record, PurePosixPath(layout.models_dir), local, why="models")
        if layout.system and not manager.staged:
            ctx.runner.run(cmd("chown", "-R", f"{DAEMON_USER}:{DAEMON_USER}", DAEMON_HOME,
                               why="the daemon's home, logs and models belong to it"))
        ensure_dir(ctx, record, PurePosixPath(layout.plist).parent, local, why="launchd jobs")
        record.exec_argv = runtime.current().serve_argv()
        self.write_plist(record, layout)
        save_manifest(ctx, record, PurePosixPath(layout.manifest_path), local)
        if manager.staged:
            report.notes.append(f"staged under {ctx.root}: nothing was loaded; on the Mac: "
                                f"launchctl bootstrap {layout.domain} {layout.plist}")
        else:
            manager.bootstrap()
            if not ctx.dry_run and options.wait_s > 0:
                report.await_server(client_url(manager.env_store().read()), options.wait_s)
        report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
        return report

    def _prechecks(self, options: InstallOptions, layout: LaunchdLayout) -> list[str]:
        ctx = self.ctx
        if layout.system and not ctx.host.is_root and not ctx.dry_run:
            raise PrivilegeError("a LaunchDaemon needs root: it creates the _ollama account",
                                 hint="run it with sudo, or drop --system for a per-user agent")
        other = LaunchdLayout(layout.account, system=not layout.system)
        if manifest.load(self.local(other.manifest_path)) is not None:
            raise OllamactlError(f"already installed as a "
                                 f"{'daemon' if other.system else 'agent'}",
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
            notes.append(f"another Ollama server is set up here ({found}); both want port "
                         "11434: quit or remove one")
        return notes

    def write_plist(self, record: Manifest, layout: LaunchdLayout) -> bool:
        """Render the plist; on update, keep its EnvironmentVariables and every foreign key."""
        ctx = self.ctx
        environment = [("PATH", SERVER_PATH)]
        if layout.system:
            environment.append(("HOME", DAEMON_HOME))
        spec = PlistSpec(tuple(record.exec_argv), layout.log_path, layout.home,
                         tuple(environment), user_name=DAEMON_USER if layout.system else "",
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

    # -- the daemon's account (dscl) ------------------------------------------------------
    def _dscl_ids(self, kind: str, attribute: str) -> dict[str, int]:
        result = self.ctx.runner.run(cmd("dscl", ".", "-list", f"/{kind}", attribute,
                                         mutates=False, why=f"ids in use ({kind})"))
        ids = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                ids[parts[0]] = int(parts[1])
        return ids

    def _daemon_account(self, record: Manifest, report: InstallReport, *,
                        staged: bool) -> None:
        """The hidden ``_ollama`` user and group, created with dscl where missing."""
        ctx = self.ctx
        if staged:
            report.notes.append(f"staged: the {DAEMON_USER} account is made with dscl on the "
                                "Mac")
            return
        users = self._dscl_ids("Users", "UniqueID")
        groups = self._dscl_ids("Groups", "PrimaryGroupID")
        if DAEMON_USER in users and DAEMON_USER in groups:
            return
        taken = set(users.values()) | set(groups.values())
        free = next((i for i in SERVICE_IDS if i not in taken), None)
        if free is None:
            raise OllamactlError(f"no free id in {SERVICE_IDS.start}-{SERVICE_IDS.stop - 1} "
                                 f"for the {DAEMON_USER} account")
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

    # -- uninstall ------------------------------------------------------------------------
    def plan_uninstall(self, *, purge: bool) -> UninstallPlan:
        layout = self.layout
        record = self.load_manifest()
        if record is None:
            raise UsageError(f"no ollamactl install here (no {layout.manifest_path})",
                             hint="only what `ollamactl install` recorded can be uninstalled")
        return plan_removal(record, self.ctx.path(record.models_dir),
                            [f"unload the job ({layout.target})"], purge=purge)

    def uninstall(self, plan: UninstallPlan) -> list[str]:
        """Unload, drop the session copies of our settings, remove what install created."""
        ctx, record = self.ctx, plan.record
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
        remove_created(ctx, record, self.local, PurePosixPath, recursive=owned.__contains__,
                       keep=lambda p: plan.keep_models and holds(p, record.models_dir,
                                                                 PurePosixPath))
        if not manager.staged:
            for name in record.created_users:
                ctx.runner.run(cmd("dscl", ".", "-delete", f"/Users/{name}",
                                   why="created by install"))
            for name in record.created_groups:
                ctx.runner.run(cmd("dscl", ".", "-delete", f"/Groups/{name}",
                                   why="created by install"))
        return [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]


# -- doctor checks (users-and-security C39) -----------------------------------------------------

PLATFORM = (Macos,)
RESTART = Fix("restart the service so it reads its settings", (("ollamactl", "restart"),),
              safe=True)


def _manager(p: Probe) -> LaunchdManager:
    return cast(Macos, p.platform).service_manager()


def _job_installed(p: Probe) -> Finding | None:
    if not _manager(p).plist_file.exists():
        return skip("the launchd job is not installed")
    return None


@check("platform.launchd-setenv", "launchctl setenv values are kept in the plist",
       area="service", platforms=PLATFORM, needs=_job_installed)
def launchd_setenv(p: Probe) -> Finding:
    """C39: ``launchctl getenv NAME`` against the plist's EnvironmentVariables."""
    manager = _manager(p)
    drift = launchd.session_drift(p.ctx, manager.layout)
    if not drift:
        return ok("no launchctl setenv value is missing from the plist")
    detail = "; ".join(f"{d.name}={d.session} (plist: {d.plist or 'missing'})" for d in drift)
    return warn(f"{len(drift)} setting(s) live only in the login session and are lost at "
                "reboot", detail,
                Fix("persist them in the plist",
                    tuple(("ollamactl", "env", "set", d.name, d.session) for d in drift),
                    safe=True))


@check("platform.launchd-loaded", "The loaded launchd job matches its plist", area="service",
       platforms=PLATFORM, needs=_job_installed)
def launchd_loaded(p: Probe) -> Finding:
    """C39: a plist edited by hand but not reloaded (``launchctl print`` shows the old one)."""
    manager = _manager(p)
    job = manager.job()
    if job is None:
        return warn(f"{manager.layout.target} is not loaded",
                    fix=Fix("load it", (("ollamactl", "start"),), safe=True))
    if manager.definition_changed(job):
        return warn("the plist changed since launchd loaded it; the server runs with the old "
                    "settings", fix=RESTART)
    return ok(f"{manager.layout.target} is loaded ({job.state})")


@check("platform.launchd-competing", "No second Ollama server on this Mac", area="service",
       platforms=PLATFORM, needs=_job_installed)
def launchd_competing(p: Probe) -> Finding:
    """C39: the Ollama app or Homebrew's ``ollama`` service beside our job."""
    manager = _manager(p)
    found = launchd.competing_servers(p.ctx, manager.layout.account)
    if found:
        return fail(f"another Ollama server is set up: {', '.join(found)}",
                    "both serve port 11434; whichever starts first wins",
                    Fix("quit the Ollama app and remove it from Login Items, or "
                        "`brew services stop ollama`"))
    return ok("no Ollama app or Homebrew service beside ours")
