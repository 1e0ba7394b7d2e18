"""The Windows platform unit per user: a logon task in Task Scheduler, settings in
``HKCU\\Environment`` (the mechanism is :mod:`.windows`); and what both Windows units share
(:class:`WindowsPlatform`: paths under ``--root``, the checks of users-and-security C40).

``%LOCALAPPDATA%\\Programs\\ollamactl`` holds the task definition, the manifest and the settings
ledger; ``%LOCALAPPDATA%\\Ollama`` the server's logs; ``%USERPROFILE%\\.ollama\\models`` the
models. ``schtasks /Create /XML ... /F`` registers (or, on update, replaces) the task, then
``schtasks /Run`` starts it. Uninstall ends and deletes the task, puts back the settings
``env set`` changed, and removes the files install created; models stay unless ``--purge``.
No Administrator rights are needed.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path, PurePath, PureWindowsPath
from typing import TYPE_CHECKING, ClassVar, cast

from ollamactl.client import client_url
from ollamactl.doctor.finding import Finding, Fix, ok, skip, warn
from ollamactl.doctor.registry import check
from ollamactl.errors import OllamactlError, UsageError
from ollamactl.host import WINDOWS
from ollamactl.install import (
    InstallOptions,
    InstallReport,
    UninstallPlan,
    ensure_dir,
    holds,
    plan_removal,
    remove_created,
    runtime,
    save_manifest,
)
from ollamactl.install.manifest import Manifest
from ollamactl.service import windows, windows_system
from ollamactl.service.base import Platform
from ollamactl.service.windows import (
    RegistryEnvStore,
    TaskSchedulerManager,
    TaskSpec,
    WindowsLayout,
    local_path,
    render_task,
    server_action,
    task_xml_bytes,
)
from ollamactl.service.windows_system import ServiceEnvStore

if TYPE_CHECKING:
    from ollamactl.context import Context
    from ollamactl.doctor.probe import Probe

BACKEND = "windows-task"


def installed_as_service(ctx: Context) -> bool:
    """Only the service's manifest exists (``install --system``), not the task's."""
    account = windows.login_account()
    task = local_path(ctx, WindowsLayout.for_host(account).manifest_path)
    service = local_path(ctx, windows_system.ServiceLayout.for_host(account).manifest_path)
    return service.exists() and not task.exists()


class WindowsPlatform(Platform):
    """What the logon task and the service share: Windows paths (``C:`` as ``<root>/C``
    under ``--root``) and the doctor checks of their settings."""

    family = "Windows"
    #: Whose settings the server reads (doctor's wording): the user's or the service's own.
    settings_owner: ClassVar[str]
    #: What runs the server (doctor's wording): the task or the service.
    runs_as: ClassVar[str]

    def local(self, path: str | PurePath) -> Path:
        return local_path(self.ctx, str(path))

    @abstractmethod
    def settings_store(self) -> RegistryEnvStore | ServiceEnvStore:
        """The registry-backed store, with the comparisons with HKLM doctor makes."""


class WindowsTask(WindowsPlatform):
    """Windows, per user: the logon task."""

    name = "windows-task"
    backends = (BACKEND,)
    settings_owner = "user"
    runs_as = "task"

    @classmethod
    def applies(cls, ctx: Context, *, system: bool | None) -> bool:
        return ctx.host.os_name == WINDOWS and (
            system is False or (system is None and not installed_as_service(ctx)))

    @property
    def layout(self) -> WindowsLayout:
        return WindowsLayout.for_host(windows.login_account())

    def service_manager(self) -> TaskSchedulerManager:
        return TaskSchedulerManager(self.ctx, self.layout)

    def settings_store(self) -> RegistryEnvStore:
        return self.service_manager().env_store()

    def install(self, options: InstallOptions) -> InstallReport:
        """Install or update the logon task (see the module docstring)."""
        ctx, layout = self.ctx, self.layout
        other = windows_system.ServiceLayout.for_host(layout.account).manifest_path
        if self.local(other).exists():
            raise OllamactlError(f"already installed as a service ({other})",
                                 hint="run `ollamactl uninstall` first")
        existing = self.load_manifest()
        record = existing or Manifest(backend=BACKEND, user=layout.account.name,
                                      models_dir=str(layout.models_dir))
        report = InstallReport(BACKEND, update=existing is not None,
                               notes=[f"host: {ctx.host.describe()}"])
        for found in windows.competing_servers(ctx, layout):
            report.notes.append(f"Ollama's own app is installed ({found}); both serve port "
                                "11434: quit it (and remove it from startup) or uninstall one")
        manager = TaskSchedulerManager(ctx, layout)
        local = self.local
        if existing is not None and not manager.staged:
            manager.stop()
        ensure_dir(ctx, record, layout.program_dir, local, why="ollamactl's task and records")
        ensure_dir(ctx, record, layout.log_path.parent, local, why="server.log")
        ensure_dir(ctx, record, layout.models_dir, local, why="models")
        python = runtime.current().python
        record.exec_argv = [python, "-m", "ollamactl.service.windows", "serve",
                            str(layout.log_path)]
        command, arguments = server_action(python, str(layout.log_path))
        spec = TaskSpec(layout.user_id, command, arguments, str(layout.program_dir))
        xml = local(layout.task_xml)
        if not xml.exists():
            record.created_path(str(layout.task_xml))
        changed = ctx.runner.write_file(xml, task_xml_bytes(render_task(spec)), backup=False,
                                        why="the logon task's definition")
        save_manifest(ctx, record, layout.manifest_path, local)
        if manager.staged:
            report.notes.append(f"staged under {ctx.root}: no task was registered; on the PC: "
                                f"schtasks /Create /TN {windows.TASK_NAME} /XML "
                                f"{layout.task_xml}")
        else:
            if changed or manager.query() is None:
                manager.create_task()
            record.enabled = True
            manager.start()
            if not ctx.dry_run and options.wait_s > 0:
                report.await_server(client_url(manager.env_store().read()), options.wait_s)
        report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
        return report

    def plan_uninstall(self, *, purge: bool) -> UninstallPlan:
        record = self.load_manifest()
        if record is None:
            raise UsageError(f"no ollamactl install here (no {self.layout.manifest_path})",
                             hint="only what `ollamactl install` recorded can be uninstalled")
        return plan_removal(record, self.local(record.models_dir),
                            [f"end and delete the task {windows.TASK_NAME}",
                             "put back the user environment variables `env set` changed"],
                            purge=purge, path_type=PureWindowsPath)

    def uninstall(self, plan: UninstallPlan) -> list[str]:
        """End and delete the task, restore the settings, remove what install created."""
        ctx, record = self.ctx, plan.record
        manager = self.service_manager()
        layout = manager.layout
        if not manager.staged:
            manager.stop()
            if manager.query() is not None:
                manager.delete_task()
            manager.env_store().restore_previous()
        owned = {str(layout.program_dir)}
        if not plan.keep_models:
            owned.add(record.models_dir)
        remove_created(ctx, record, self.local, PureWindowsPath, recursive=owned.__contains__,
                       keep=lambda p: plan.keep_models and holds(p, record.models_dir,
                                                                 PureWindowsPath))
        return [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]


# -- doctor checks of both Windows units (users-and-security C40) -------------------------------

RESTART = Fix("restart the service so it reads its settings", (("ollamactl", "restart"),),
              safe=True)


def registry_readable(p: Probe) -> Finding | None:
    """The skip for a staged tree (no registry there), else None."""
    if p.ctx.root != Path("/"):
        return skip("the registry of a staged tree cannot be read")
    return None


@check("platform.windows-conflicts", "User and machine settings agree", area="settings",
       platforms=(WindowsPlatform,), needs=registry_readable)
def windows_conflicts(p: Probe) -> Finding:
    """C40: an OLLAMA_* variable in HKCU and HKLM with different values."""
    platform = cast(WindowsPlatform, p.platform)
    store = platform.settings_store()
    conflicts = store.conflicts()
    machine = store.machine_only()
    extra = f"; machine-wide only: {', '.join(machine)}" if machine else ""
    ours = platform.settings_owner
    if not conflicts:
        return ok(f"no OLLAMA_* variable differs between {ours} and machine" + extra)
    detail = "; ".join(f"{c.name}: {ours} {c.user!r}, machine {c.machine!r}" for c in conflicts)
    summary = "the service's Environment and the machine environment: the service's value " \
              "wins for it, the machine value for every other program" \
        if ours == "service" else "HKCU and HKLM: our (user) value wins for the task, the " \
                                  "machine value for services and other users"
    return warn(f"{len(conflicts)} setting(s) differ between {summary}", detail + extra,
                Fix("remove the machine value (Administrator)",
                    tuple(("reg", "delete", f"HKLM\\{windows.MACHINE_ENV_KEY}", "/v", c.name,
                           "/f") for c in conflicts)))


@check("platform.windows-restart", "The server runs with the current settings", area="settings",
       platforms=(WindowsPlatform,), needs=registry_readable)
def windows_restart(p: Probe) -> Finding:
    """C40: HKCU\\Environment (or the service's key) written after the server started (not
    restarted)."""
    platform = cast(WindowsPlatform, p.platform)
    what = platform.runs_as
    state = platform.service_manager().status()
    if not state.running:
        return skip(f"the {what} is not running")
    changed = windows.settings_after_start(platform.settings_store(), state)
    settings_of = "the service's settings" if what == "service" else "user settings"
    if changed is None:
        return ok(f"none of {settings_of} changed since the server started")
    return warn(f"{settings_of} changed after the server started; it still runs with the old "
                "ones", fix=RESTART)


@check("platform.windows-competing", "No Ollama tray app beside the task", area="service",
       platforms=(WindowsPlatform,), needs=registry_readable)
def windows_competing(p: Probe) -> Finding:
    """C40: Ollama's own tray app installed as well (two servers, app settings override
    OLLAMA_MODELS)."""
    found = windows.competing_servers(p.ctx, WindowsLayout.for_host(windows.login_account()))
    if found:
        return warn(f"Ollama's app is installed too ({found[0]})",
                    "it starts its own server at logon and its settings override OLLAMA_MODELS",
                    Fix("quit it and remove it from startup, or uninstall one of the two"))
    return ok("no Ollama tray app installed")
