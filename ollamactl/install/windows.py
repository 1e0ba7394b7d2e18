"""Windows install: a per-user logon task (no Administrator rights), or with ``--system`` a
Windows service.

Task: ``%LOCALAPPDATA%\\Programs\\ollamactl`` holds the task definition, the manifest and the
settings ledger; ``%LOCALAPPDATA%\\Ollama`` the server's logs; ``%USERPROFILE%\\.ollama\\models``
the models. ``schtasks /Create /XML ... /F`` registers (or, on update, replaces) the task, then
``schtasks /Run`` starts it. Uninstall ends and deletes the task, puts back the settings
``env set`` changed, and removes the files install created; models stay unless ``--purge``.

Service (Administrator): ``%ProgramFiles%\\ollamactl`` holds the manifest,
``%ProgramData%\\Ollama`` the logs and models (the virtual account ``NT SERVICE\\ollama`` may
modify it). ``sc.exe create`` (``config`` on update), description, recovery actions, icacls,
``OLLAMA_MODELS`` in the service's Environment, ``sc.exe start``. Uninstall stops it, runs
``sc.exe delete`` (the key and its Environment go with it) and removes the files.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Sequence
from pathlib import PureWindowsPath

from ollamactl.context import Context
from ollamactl.errors import OllamactlError, PrivilegeError, UsageError
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
from ollamactl.service import health, windows
from ollamactl.service.base import SERVICE_NAME
from ollamactl.service.windows import (
    TaskSchedulerManager,
    TaskSpec,
    WindowsLayout,
    local_path,
    render_task,
    server_action,
    task_xml_bytes,
)
from ollamactl.service.windows_system import (
    SERVICE_ACCOUNT,
    ServiceEnvStore,
    ServiceLayout,
    WindowsServiceManager,
    host_command_line,
)

BACKEND = "windows-task"
SERVICE_BACKEND = "windows-service"


def _local(ctx: Context) -> LocalPath:
    return lambda path: local_path(ctx, str(path))


def load_manifest(ctx: Context, layout: WindowsLayout | ServiceLayout) -> Manifest | None:
    try:
        return Manifest.from_json(local_path(ctx, layout.manifest_path).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise OllamactlError(f"the install manifest {layout.manifest_path} is damaged: {exc}"
                             ) from exc


def install(ctx: Context, options: InstallOptions) -> InstallReport:
    """Install or update the logon task, or the service (see the module docstring)."""
    account = windows.login_account()
    task_layout = WindowsLayout.for_host(account)
    service_layout = ServiceLayout.for_host(account)
    other = task_layout.manifest_path if options.system else service_layout.manifest_path
    if local_path(ctx, other).exists():
        raise OllamactlError(f"already installed "
                             f"{'per user (a logon task)' if options.system else 'as a service'}"
                             f" ({other})", hint="run `ollamactl uninstall` first")
    if options.system:
        return install_service(ctx, options, service_layout)
    layout = task_layout
    existing = load_manifest(ctx, layout)
    record = existing or Manifest(backend=BACKEND, user=layout.account.name,
                                  models_dir=str(layout.models_dir))
    report = InstallReport(BACKEND, update=existing is not None,
                           notes=[f"host: {ctx.host.describe()}"])
    for found in windows.competing_servers(ctx, layout):
        report.notes.append(f"Ollama's own app is installed ({found}); both serve port 11434: "
                            "quit it (and remove it from startup) or uninstall one")
    manager = TaskSchedulerManager(ctx, layout)
    local = _local(ctx)
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
                            f"schtasks /Create /TN {windows.TASK_NAME} /XML {layout.task_xml}")
    else:
        if changed or manager.query() is None:
            manager.create_task()
        record.enabled = True
        manager.start()
        if not ctx.dry_run and options.wait_s > 0:
            report.await_server(health.client_url(manager.env_store().read()), options.wait_s)
    report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
    return report


# -- the service (--system) -------------------------------------------------------------------

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


def install_service(ctx: Context, options: InstallOptions, layout: ServiceLayout
                    ) -> InstallReport:
    """Install or update the Windows service (Administrator; see the module docstring)."""
    if not ctx.host.is_root and not ctx.dry_run:
        raise PrivilegeError("a Windows service needs Administrator rights",
                             hint="run it from an Administrator prompt (Run as administrator),"
                                  " or drop --system for a per-user logon task")
    existing = load_manifest(ctx, layout)
    manager = WindowsServiceManager(ctx, layout)
    defined = manager.query() is not None
    if defined and existing is None:
        raise OllamactlError(f"a service named {SERVICE_NAME} exists and ollamactl did not "
                             "create it", hint=f"remove it first (sc.exe delete {SERVICE_NAME})"
                                               " or keep using it")
    python, python_env = _service_python()
    if PureWindowsPath(python).is_relative_to(layout.account.user_profile):
        raise OllamactlError(f"{python} is in {layout.account.name}'s profile, which "
                             f"{SERVICE_ACCOUNT} cannot read",
                             hint="install Python for all users (in Program Files) with "
                                  "ollamactl, or drop --system for a per-user logon task")
    record = existing or Manifest(backend=SERVICE_BACKEND, user=SERVICE_ACCOUNT,
                                  models_dir=str(layout.models_dir))
    report = InstallReport(SERVICE_BACKEND, update=existing is not None,
                           notes=[f"host: {ctx.host.describe()}"])
    for found in windows.competing_servers(ctx, WindowsLayout(layout.account)):
        report.notes.append(f"Ollama's own app is installed ({found}); it starts a server on "
                            "port 11434 at logon too: quit it (and remove it from startup) "
                            "or uninstall one")
    local = _local(ctx)
    if defined:
        manager.stop()
    ensure_dir(ctx, record, layout.program_dir, local, why="ollamactl's records")
    ensure_dir(ctx, record, layout.log_path.parent, local, why="server.log")
    ensure_dir(ctx, record, layout.models_dir, local, why="models")
    record.exec_argv = [python, "-m", "ollamactl", "serve"]
    save_manifest(ctx, record, layout.manifest_path, local)
    bin_path = host_command_line(python, str(layout.log_path))
    if manager.staged:
        report.notes.append(f"staged under {ctx.root}: no service was registered; on the PC: "
                            f"sc.exe create {SERVICE_NAME} binPath= {bin_path} ...")
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
            report.await_server(health.client_url(store.read()), options.wait_s)
    report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
    return report


def _installed(ctx: Context) -> tuple[WindowsLayout | ServiceLayout, Manifest]:
    account = windows.login_account()
    for layout in (WindowsLayout.for_host(account), ServiceLayout.for_host(account)):
        record = load_manifest(ctx, layout)
        if record is not None:
            return layout, record
    expected = WindowsLayout.for_host(account).manifest_path
    raise UsageError(f"no ollamactl install here (no {expected})",
                     hint="only what `ollamactl install` recorded can be uninstalled")


def plan_uninstall(ctx: Context, *, purge: bool) -> UninstallPlan:
    layout, record = _installed(ctx)
    first = [f"stop the service {SERVICE_NAME} and delete it (sc.exe delete: its settings go "
             "with it)"] if isinstance(layout, ServiceLayout) else [
        f"end and delete the task {windows.TASK_NAME}",
        "put back the user environment variables `env set` changed"]
    return plan_removal(record, local_path(ctx, record.models_dir), first, purge=purge,
                        path_type=PureWindowsPath)


def uninstall(ctx: Context, plan: UninstallPlan) -> list[str]:
    """End and delete the task (or the service), restore the settings, remove what install
    created."""
    record = plan.record
    if record.backend == SERVICE_BACKEND:
        return _uninstall_service(ctx, plan)
    manager = TaskSchedulerManager(ctx, WindowsLayout.for_host(windows.login_account()))
    layout = manager.layout
    if not manager.staged:
        manager.stop()
        if manager.query() is not None:
            manager.delete_task()
        manager.env_store().restore_previous()
    owned = {str(layout.program_dir)}
    if not plan.keep_models:
        owned.add(record.models_dir)
    remove_created(ctx, record, _local(ctx), PureWindowsPath, owned_trees=owned,
                   keep=lambda p: plan.keep_models and holds(p, record.models_dir,
                                                             PureWindowsPath))
    return [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]



def _uninstall_service(ctx: Context, plan: UninstallPlan) -> list[str]:
    record = plan.record
    manager = WindowsServiceManager(ctx, ServiceLayout.for_host(windows.login_account()))
    layout = manager.layout
    if manager.query() is not None:
        manager.stop()
        manager.delete()
    owned = {str(layout.program_dir), str(layout.log_path.parent)}
    if not plan.keep_models:
        owned.add(record.models_dir)
    remove_created(ctx, record, _local(ctx), PureWindowsPath, owned_trees=owned,
                   keep=lambda p: plan.keep_models and holds(p, record.models_dir,
                                                             PureWindowsPath))
    return [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
