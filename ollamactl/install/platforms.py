"""Install, update and uninstall on macOS and Windows: dispatch by OS, and the helpers both share.

The Linux plan (``ollamactl.install``) hands over here when the host is not Linux. Both
flavours keep the Linux contract: every change through ``ctx.runner`` (``--dry-run`` prints
it), every path under ``ctx.root`` (``--root`` stages it), a manifest of what was created, and
an uninstall that removes exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from ollamactl.context import Context
from ollamactl.errors import UnsupportedPlatform
from ollamactl.host import DARWIN, WINDOWS
from ollamactl.install.manifest import Manifest

if TYPE_CHECKING:
    from ollamactl.install import InstallOptions, InstallReport, UninstallPlan

LocalPath = Callable[[PurePath], Path]


def install(ctx: Context, options: InstallOptions) -> InstallReport:
    if ctx.host.os_name == DARWIN:
        from ollamactl.install.macos import install as install_macos

        return install_macos(ctx, options)
    if ctx.host.os_name == WINDOWS:
        from ollamactl.install.windows import install as install_windows

        return install_windows(ctx, options)
    raise UnsupportedPlatform(f"`ollamactl install` does not support {ctx.host.os_name}")


def plan_uninstall(ctx: Context, *, purge: bool) -> UninstallPlan:
    if ctx.host.os_name == DARWIN:
        from ollamactl.install.macos import plan_uninstall as plan_macos

        return plan_macos(ctx, purge=purge)
    if ctx.host.os_name == WINDOWS:
        from ollamactl.install.windows import plan_uninstall as plan_windows

        return plan_windows(ctx, purge=purge)
    raise UnsupportedPlatform(f"`ollamactl uninstall` does not support {ctx.host.os_name}")


def uninstall(ctx: Context, plan: UninstallPlan) -> list[str]:
    if ctx.host.os_name == DARWIN:
        from ollamactl.install.macos import uninstall as uninstall_macos

        return uninstall_macos(ctx, plan)
    from ollamactl.install.windows import uninstall as uninstall_windows

    return uninstall_windows(ctx, plan)


def manifest_file(ctx: Context) -> Path:
    """Where this OS keeps the install manifest (under ``ctx.root``)."""
    if ctx.host.os_name == DARWIN:
        from ollamactl.service.launchd import LaunchdLayout

        return ctx.path(LaunchdLayout.detect(ctx).manifest_path)
    from ollamactl.service.windows import WindowsLayout, local_path
    from ollamactl.service.windows_system import ServiceLayout

    layout = WindowsLayout.for_host()
    task = local_path(ctx, layout.manifest_path)
    service = local_path(ctx, ServiceLayout.for_host(layout.account).manifest_path)
    return service if service.exists() and not task.exists() else task


# -- shared steps ------------------------------------------------------------------------------

def ensure_dir(ctx: Context, record: Manifest, target: PurePath, local: LocalPath, *,
               why: str, mode: int = 0o755) -> None:
    """Create ``target`` and its missing parents, recording each one created."""
    for path in [*reversed(target.parents), target]:
        if path != path.parent and not local(path).exists():
            record.created_path(str(path))
    ctx.runner.make_dir(local(target), mode=mode, why=why)


def save_manifest(ctx: Context, record: Manifest, target: PurePath, local: LocalPath) -> None:
    if not local(target).exists():
        record.created_path(str(target))
    ctx.runner.write_file(local(target), record.to_json(), mode=0o644, backup=False,
                          why="remember what install created")


def remove_created(ctx: Context, record: Manifest, local: LocalPath, path_type: type[PurePath],
                   *, owned_trees: set[str], keep: Callable[[str], bool]) -> None:
    """Remove what the manifest lists, newest first; a directory we created that now holds
    someone else's files stays (only ``owned_trees`` are removed whole)."""
    for text in reversed(record.created_paths):
        if keep(text):
            continue
        path = local(path_type(text))
        recursive = text in owned_trees
        if path.is_dir() and not path.is_symlink() and not recursive and any(path.iterdir()):
            continue
        ctx.runner.remove(path, recursive=recursive, why="created by install")
