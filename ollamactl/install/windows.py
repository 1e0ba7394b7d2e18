"""Windows install: a per-user logon task, no Administrator rights needed.

``%LOCALAPPDATA%\\Programs\\ollamactl`` holds the task definition, the manifest and the settings
ledger; ``%LOCALAPPDATA%\\Ollama`` the server's logs; ``%USERPROFILE%\\.ollama\\models`` the
models. ``schtasks /Create /XML ... /F`` registers (or, on update, replaces) the task, then
``schtasks /Run`` starts it. Uninstall ends and deletes the task, puts back the settings
``env set`` changed, and removes the files install created; models stay unless ``--purge``.
"""

from __future__ import annotations

from pathlib import PureWindowsPath

from ollamactl.context import Context
from ollamactl.errors import OllamactlError, UnsupportedPlatform, UsageError
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
from ollamactl.service.windows import (
    TaskSchedulerManager,
    TaskSpec,
    WindowsLayout,
    local_path,
    render_task,
    server_action,
    task_xml_bytes,
)

BACKEND = "windows-task"


def _local(ctx: Context) -> LocalPath:
    return lambda path: local_path(ctx, str(path))


def load_manifest(ctx: Context, layout: WindowsLayout) -> Manifest | None:
    try:
        return Manifest.from_json(local_path(ctx, layout.manifest_path).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise OllamactlError(f"the install manifest {layout.manifest_path} is damaged: {exc}"
                             ) from exc


def install(ctx: Context, options: InstallOptions) -> InstallReport:
    """Install or update the logon task (see the module docstring)."""
    if options.system:
        raise UnsupportedPlatform(
            "--system (a Windows service) is not in this version: python.exe cannot talk to "
            "the service control manager without a service host",
            hint="install per user (a logon task), which needs no Administrator rights")
    layout = WindowsLayout.for_host(windows.login_account())
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
            report.url = health.client_url(manager.env_store().read())
            health.wait_until_up(report.url, timeout_s=options.wait_s)
            report.version = health.server_version(report.url)
    report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
    return report


def plan_uninstall(ctx: Context, *, purge: bool) -> UninstallPlan:
    layout = WindowsLayout.for_host(windows.login_account())
    record = load_manifest(ctx, layout)
    if record is None:
        raise UsageError(f"no ollamactl install here (no {layout.manifest_path})",
                         hint="only what `ollamactl install` recorded can be uninstalled")
    return plan_removal(record, local_path(ctx, record.models_dir),
                        [f"end and delete the task {windows.TASK_NAME}",
                         "put back the user environment variables `env set` changed"],
                        purge=purge, path_type=PureWindowsPath)


def uninstall(ctx: Context, plan: UninstallPlan) -> list[str]:
    """End and delete the task, restore the settings, remove what install created."""
    record = plan.record
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

