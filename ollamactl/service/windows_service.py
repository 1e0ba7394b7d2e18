"""The Windows platform unit for the machine (``install --system``, Administrator): the service
``ollama`` through sc.exe, its own Environment (the mechanism is :mod:`.windows_system`; the
service host that answers the SCM is :mod:`.winservice`).

``%ProgramFiles%\\ollamactl`` holds the manifest, ``%ProgramData%\\Ollama`` the logs and models
(the virtual account ``NT SERVICE\\ollama`` may modify it). ``sc.exe create`` (``config`` on
update), description, recovery actions, icacls, ``OLLAMA_MODELS`` in the service's
Environment, ``sc.exe start``. Uninstall stops it, runs ``sc.exe delete`` (the key and its
Environment go with it) and removes the files. Chosen when only this install's manifest exists,
or when ``install --system`` asks for it.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Sequence
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, cast

from ollamactl.client import client_url
from ollamactl.doctor.finding import Finding, Fix, fail, ok, warn
from ollamactl.doctor.registry import check
from ollamactl.errors import OllamactlError, PrivilegeError, UsageError
from ollamactl.host import WINDOWS
from ollamactl.identity import SERVICE_NAME
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
from ollamactl.service import windows
from ollamactl.service.windows import WindowsLayout
from ollamactl.service.windows_system import (
    SERVICE_ACCOUNT,
    ServiceEnvStore,
    ServiceLayout,
    WindowsServiceManager,
    host_command_line,
)
from ollamactl.service.windows_task import (
    WindowsPlatform,
    installed_as_service,
    registry_readable,
)

if TYPE_CHECKING:
    from ollamactl.context import Context
    from ollamactl.doctor.probe import Probe

BACKEND = "windows-service"


def service_interpreter(executable: str, base_executable: str, site_dirs: Sequence[str]
                        ) -> tuple[str, dict[str, str]]:
    """The python.exe for the binPath, and what its environment needs.

    A venv's python.exe is a redirector that starts the base interpreter as a child, and the
    SCM only talks to the process it started; so a venv runs as its base interpreter with the
    venv's site-packages on PYTHONPATH (``.pth`` files of editable installs are not read).
    """
    if PureWindowsPath(executable) == PureWindowsPath(base_executable):
        return executable, {}
    return base_executable, {"PYTHONPATH": ";".join(dict.fromkeys(site_dirs))}


def _service_python() -> tuple[str, dict[str, str]]:
    paths = sysconfig.get_paths()
    base = str(getattr(sys, "_base_executable", "") or sys.executable)
    python = runtime.current().python
    return service_interpreter(python, python if sys.prefix == sys.base_prefix else base,
                               [paths["purelib"], paths["platlib"]])


class WindowsService(WindowsPlatform):
    """Windows, for the machine: the ``ollama`` service."""

    name = "windows-service"
    family = "Windows service"
    backends = (BACKEND,)
    settings_owner = "service"
    runs_as = "service"

    @classmethod
    def applies(cls, ctx: Context, *, system: bool | None) -> bool:
        return ctx.host.os_name == WINDOWS and (
            system is True or (system is None and installed_as_service(ctx)))

    @property
    def layout(self) -> ServiceLayout:
        return ServiceLayout.for_host(windows.login_account())

    def service_manager(self) -> WindowsServiceManager:
        return WindowsServiceManager(self.ctx, self.layout)

    def settings_store(self) -> ServiceEnvStore:
        return self.service_manager().env_store()

    def install(self, options: InstallOptions) -> InstallReport:
        """Install or update the Windows service (Administrator; see the module docstring)."""
        ctx, layout = self.ctx, self.layout
        other = WindowsLayout.for_host(layout.account).manifest_path
        if self.local(other).exists():
            raise OllamactlError(f"already installed per user (a logon task) ({other})",
                                 hint="run `ollamactl uninstall` first")
        if not ctx.host.is_root and not ctx.dry_run:
            raise PrivilegeError("a Windows service needs Administrator rights",
                                 hint="run it from an Administrator prompt (Run as "
                                      "administrator), or drop --system for a per-user logon "
                                      "task")
        existing = self.load_manifest()
        manager = WindowsServiceManager(ctx, layout)
        defined = manager.query() is not None
        if defined and existing is None:
            raise OllamactlError(f"a service named {SERVICE_NAME} exists and ollamactl did not "
                                 "create it", hint=f"remove it first (sc.exe delete "
                                                   f"{SERVICE_NAME}) or keep using it")
        python, python_env = _service_python()
        if PureWindowsPath(python).is_relative_to(layout.account.user_profile):
            raise OllamactlError(f"{python} is in {layout.account.name}'s profile, which "
                                 f"{SERVICE_ACCOUNT} cannot read",
                                 hint="install Python for all users (in Program Files) with "
                                      "ollamactl, or drop --system for a per-user logon task")
        record = existing or Manifest(backend=BACKEND, user=SERVICE_ACCOUNT,
                                      models_dir=str(layout.models_dir))
        report = InstallReport(BACKEND, update=existing is not None,
                               notes=[f"host: {ctx.host.describe()}"])
        for found in windows.competing_servers(ctx, WindowsLayout(layout.account)):
            report.notes.append(f"Ollama's own app is installed ({found}); it starts a server "
                                "on port 11434 at logon too: quit it (and remove it from "
                                "startup) or uninstall one")
        local = self.local
        if defined:
            manager.stop()
        ensure_dir(ctx, record, layout.program_dir, local, why="ollamactl's records")
        ensure_dir(ctx, record, layout.log_path.parent, local, why="server.log")
        ensure_dir(ctx, record, layout.models_dir, local, why="models")
        record.exec_argv = [python, "-m", "ollamactl", "serve"]
        save_manifest(ctx, record, layout.manifest_path, local)
        bin_path = host_command_line(python, str(layout.log_path))
        if manager.staged:
            report.notes.append(f"staged under {ctx.root}: no service was registered; on the "
                                f"PC: sc.exe create {SERVICE_NAME} binPath= {bin_path} ...")
        else:
            manager.define(bin_path, update=defined)
            manager.grant_data()
            store = ServiceEnvStore(ctx, windows.open_registry())
            current = store.read()
            for name, value in {"OLLAMA_MODELS": str(layout.models_dir), **python_env}.items():
                if name not in current:
                    store.set(name, value)
            record.enabled = True
            manager.start()
            if not ctx.dry_run and options.wait_s > 0:
                report.await_server(client_url(store.read()), options.wait_s)
        report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
        return report

    def plan_uninstall(self, *, purge: bool) -> UninstallPlan:
        record = self.load_manifest()
        if record is None:
            raise UsageError(f"no ollamactl install here (no {self.layout.manifest_path})",
                             hint="only what `ollamactl install` recorded can be uninstalled")
        return plan_removal(record, self.local(record.models_dir),
                            [f"stop the service {SERVICE_NAME} and delete it (sc.exe delete: "
                             "its settings go with it)"], purge=purge,
                            path_type=PureWindowsPath)

    def uninstall(self, plan: UninstallPlan) -> list[str]:
        """Stop and delete the service (its settings go with its key), remove what install
        created."""
        ctx, record = self.ctx, plan.record
        manager = self.service_manager()
        layout = manager.layout
        if manager.query() is not None:
            manager.stop()
            manager.delete()
        owned = {str(layout.program_dir), str(layout.log_path.parent)}
        if not plan.keep_models:
            owned.add(record.models_dir)
        remove_created(ctx, record, self.local, PureWindowsPath, recursive=owned.__contains__,
                       keep=lambda p: plan.keep_models and holds(p, record.models_dir,
                                                                 PureWindowsPath))
        return [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]


# -- doctor --------------------------------------------------------------------------------------

@check("platform.windows-service", "The Windows service runs", area="service",
       platforms=(WindowsService,), needs=registry_readable)
def windows_service(p: Probe) -> Finding:
    """The service ``install --system`` made: running, stopped, or stopped by a server that
    died (1066 and its exit code; the recovery actions restart it)."""
    state = cast(WindowsService, p.platform).service_manager().status()
    start = Fix("start it", (("ollamactl", "start"),), safe=True)
    if not state.installed:
        return fail("the service ollama is not registered, though install recorded it",
                    fix=Fix("install it again", (("ollamactl", "install", "--system"),)))
    if state.active == "failed":
        return fail("the server died and stopped the service "
                    f"({state.extra.get('exit code', '')})",
                    "Windows restarts it by its recovery actions; `ollamactl logs` shows why",
                    start)
    if not state.running:
        return warn(f"the service is {state.detail or state.active}", fix=start)
    return ok(f"the service runs (pid {state.pid or '-'})")
