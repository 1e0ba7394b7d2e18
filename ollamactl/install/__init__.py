"""Install, update and uninstall as ordered, idempotent steps, each recorded in the manifest.

Every change runs through ``ctx.runner`` (so ``--dry-run`` only prints it) and under
``ctx.root`` (so ``--root DIR`` stages it). Running install again is an update: what is already
right is left alone, and only what changed is rewritten, between a stop and a start.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

from ollamactl import __version__
from ollamactl.context import Context
from ollamactl.errors import OllamactlError, PrivilegeError, UnsupportedPlatform, UsageError
from ollamactl.host import LINUX
from ollamactl.install import layout, manifest, runtime, users
from ollamactl.install.manifest import Manifest
from ollamactl.service import health, watchdog_paths
from ollamactl.service.systemd import (
    DROPIN_DIR,
    UNIT_PATH,
    SystemdManager,
    UnitSpec,
    is_ollamactl_unit,
    render_unit,
    unit_groups,
)
from ollamactl.service.watchdog import WatchdogManager
from ollamactl.system import check_links

MIN_FREE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class InstallOptions:
    force: bool = False              # replace a real Ollama's unit / ignore its binary
    self_contained: bool = False     # always build /opt/ollamactl
    wait_s: float = 120.0            # how long to wait for GET / after the start
    system: bool = False             # macOS: a LaunchDaemon; Windows: a service; else per-user


@dataclass
class InstallReport:
    backend: str
    update: bool
    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    url: str | None = None
    version: str | None = None

    def await_server(self, url: str, timeout_s: float) -> None:
        """Wait until the started server answers at ``url``; note it when the server that
        answers is not this ollamactl (an old process kept the port, or another server).

        Raises:
            ServerUnreachable: nothing answered within ``timeout_s``.
        """
        self.url = url
        health.wait_until_up(url, timeout_s=timeout_s)
        answer = health.server_version(url)
        self.version = str(answer) if answer is not None else None
        if answer is not None and not answer.is_this_ollamactl:
            self.notes.append(f"the server at {url} reports {answer}, not ollamactl "
                              f"{__version__}: another server holds the port or an old one "
                              "is still running (`ollamactl restart`)")


def backend_for(ctx: Context) -> str:
    """staged (under --root, for a systemd target), systemd (running), or watchdog."""
    if ctx.root != Path("/"):
        return "staged"
    return "systemd" if ctx.host.has_systemd else "watchdog"


def prechecks(ctx: Context, options: InstallOptions, existing: Manifest | None) -> list[str]:
    """Refuse what must not go ahead; return notes about what was found."""
    if ctx.host.os_name != LINUX:
        raise UnsupportedPlatform(f"`ollamactl install` supports Linux here, not "
                                  f"{ctx.host.os_name}")
    if not ctx.host.is_root and not ctx.dry_run:
        raise PrivilegeError("install needs root: it creates a system user and a service",
                             hint="run it with sudo (or try --dry-run to see the plan)")
    notes = [f"host: {ctx.host.describe()}"]
    if ctx.host.arch not in ("amd64", "arm64"):
        notes.append(f"architecture {ctx.host.arch}: untested, continuing")
    probe = ctx.root if ctx.root.exists() else Path("/")
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        raise OllamactlError(f"only {free // 2**20} MiB free under {probe}",
                             hint="free at least 512 MiB (models need much more)")
    unit = ctx.path(UNIT_PATH)
    if unit.exists() and not is_ollamactl_unit(unit.read_text(errors="replace")):
        if not options.force:
            raise OllamactlError(f"{unit} belongs to another Ollama install; not replacing it",
                                 hint="uninstall that Ollama first, or pass --force (its unit "
                                      "is backed up and restored by `ollamactl uninstall`)")
        notes.append(f"replacing the foreign unit {unit} (--force); a copy is kept")
    for binary in layout.OLLAMA_BINARIES:
        if ctx.path(binary).exists() and existing is None:
            if not options.force:
                raise OllamactlError(f"a real Ollama is installed at {ctx.path(binary)}; both "
                                     "would serve port 11434",
                                     hint="uninstall it first, or pass --force to install "
                                          "beside it (stop its service yourself)")
            notes.append(f"a real Ollama is at {ctx.path(binary)} (left alone, --force)")
    return notes


def install(ctx: Context, options: InstallOptions) -> InstallReport:
    """Install, or update what an earlier install put there (stop -> replace -> start)."""
    if ctx.host.os_name != LINUX:
        from ollamactl.install import platforms

        return platforms.install(ctx, options)
    existing = manifest.load(ctx)
    notes = prechecks(ctx, options, existing)
    backend = backend_for(ctx)
    if existing is not None and existing.backend and existing.backend != backend:
        raise OllamactlError(f"installed for {existing.backend}, but this host now needs "
                             f"{backend}", hint="run `ollamactl uninstall` first")
    record = existing or Manifest(backend=backend, user=layout.SERVICE_USER,
                                  group=layout.SERVICE_GROUP, models_dir=layout.MODELS_DIR)
    refuse_links(ctx, record)
    report = InstallReport(backend, update=existing is not None, notes=notes)
    if existing is not None and backend != "staged":
        _manager(ctx, record).stop()
    _state_dir(ctx, record)
    _accounts(ctx, record)
    _models_dir(ctx, record)
    rt = _runtime(ctx, record, options, report)
    if backend != "staged" and not ctx.dry_run:
        report.notes.extend(runtime.self_test(ctx, rt))
    record.exec_argv = rt.serve_argv()
    record.runtime_dir = layout.RUNTIME_DIR if rt.built else ""
    if backend == "watchdog":
        _watchdog_files(ctx, record)
    else:
        _unit(ctx, record, options)
    manifest.save(ctx, record)
    if backend == "staged":
        report.notes.append(f"staged under {ctx.root}: nothing was started")
    else:
        _start(ctx, record, report, options)
    report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
    return report


def refuse_links(ctx: Context, record: Manifest) -> None:
    """Refuse before anything changes when a link another user could have placed sits on a
    path that install or uninstall acts on as root: the service user owns its home, and a
    chown or purge through its link would act on whatever the link points to.

    Raises:
        UnsafePath: naming the link.
    """
    for path in dict.fromkeys([record.models_dir, *record.created_paths, *_OWNED_TREES]):
        check_links(ctx.path(path))


def _manager(ctx: Context, record: Manifest) -> SystemdManager | WatchdogManager:
    if record.backend == "watchdog":
        return WatchdogManager(ctx, watchdog_paths(ctx), record.exec_argv,
                               user=record.user or None)
    return SystemdManager(ctx)


def _ensure_dir(ctx: Context, record: Manifest, target: str, *, mode: int = 0o755,
                owner: tuple[int, int] | None = None, why: str = "") -> None:
    """Create ``target`` and any missing parent, recording each one created."""
    for path in [*reversed(Path(target).parents), Path(target)]:
        if str(path) != "/" and not ctx.path(str(path)).exists():
            record.created_path(str(path))
    if owner is None or ctx.dry_run:
        ctx.runner.make_dir(ctx.path(target), mode=mode, why=why)
    else:
        ctx.runner.make_dir(ctx.path(target), mode=mode, owner=owner, why=why)
        ctx.runner.chown(ctx.path(target), owner, why=why)


def _state_dir(ctx: Context, record: Manifest) -> None:
    _ensure_dir(ctx, record, layout.STATE_DIR, why="ollamactl's install records")
    if not ctx.path(layout.MANIFEST_PATH).exists():
        record.created_path(layout.MANIFEST_PATH)


def _accounts(ctx: Context, record: Manifest) -> None:
    user, group = record.user, record.group
    if group not in users.read_groups(ctx):
        users.add_group(ctx, group)
        record.created_group(group)
    if user not in users.read_users(ctx):
        for path in [*reversed(Path(layout.HOME).parents), Path(layout.HOME)]:
            if str(path) != "/" and not ctx.path(str(path)).exists():
                record.created_path(str(path))
        users.add_user(ctx, user, group=group, home=layout.HOME, shell=layout.SERVICE_SHELL)
        record.created_user(user)
    groups = users.read_groups(ctx)
    wanted = [(user, g) for g in layout.GPU_GROUPS if g in groups]
    sudo_user = os.environ.get("SUDO_USER", "")
    if sudo_user and sudo_user != "root" and sudo_user in users.read_users(ctx):
        wanted.append((sudo_user, group))
    for member, target in wanted:
        if member not in groups.get(target, users.Group(target, -1, ())).members:
            if target == group and member == user:
                continue
            users.add_to_group(ctx, member, target)
            record.created_membership(member, target)


def _service_account(ctx: Context, record: Manifest) -> users.Account | None:
    return users.read_users(ctx).get(record.user)


def _models_dir(ctx: Context, record: Manifest) -> None:
    """The models directory under the service's home, owned by the service user, down to the
    files: models an uninstall kept belong to the old ``ollama`` uid, and a new user with
    another uid could read them but never pull, create or delete again."""
    account = _service_account(ctx, record)
    owner = (account.uid, account.gid) if account else None
    models = Path(record.models_dir)
    for path in [*reversed(models.parents), models]:
        if Path(layout.HOME) in path.parents:
            _ensure_dir(ctx, record, str(path), owner=owner, why="models, owned by the service")
    if owner is not None and Path(layout.HOME) in models.parents and \
            ctx.path(str(models)).is_dir():
        ctx.runner.chown(ctx.path(str(models)), owner, recursive=True,
                         why="models kept from an earlier install, for the service user")


def _runtime(ctx: Context, record: Manifest, options: InstallOptions,
             report: InstallReport) -> runtime.Runtime:
    account = _service_account(ctx, record)
    staged = ctx.root if ctx.root != Path("/") else None
    rt = runtime.current()
    # Before useradd (dry-run) judge as a user with no special rights: "other" mode bits.
    judged = account or users.Account(record.user, -2, -2, layout.HOME, layout.SERVICE_SHELL)
    problem = "--self-contained was asked for" if options.self_contained else ""
    if not problem:
        problem = runtime.why_unusable(rt, judged, staged_root=staged)
    if not problem and account is not None and staged is None and not ctx.dry_run:
        problem = runtime.verify_as_user(ctx, rt, record.user)
    if not problem and not record.runtime_dir:
        report.notes.append(f"runtime: {rt.prefix} (usable by {record.user})")
        return rt
    if problem:
        report.notes.append(f"runtime: {rt.prefix} is not usable by {record.user} ({problem}); "
                            f"building {layout.RUNTIME_DIR}")
    for path in [*reversed(Path(layout.RUNTIME_DIR).parents), Path(layout.RUNTIME_DIR)]:
        if str(path) != "/" and not ctx.path(str(path)).exists():
            record.created_path(str(path))
    built = runtime.build(ctx)
    if account is not None and not ctx.dry_run:
        failure = runtime.why_unusable(built, account, staged_root=staged)
        if not failure and staged is None:
            failure = runtime.verify_as_user(ctx, built, record.user)
        if failure:
            raise OllamactlError(f"the runtime built in {layout.RUNTIME_DIR} does not run as "
                                 f"{record.user}: {failure}")
    return built


def _unit(ctx: Context, record: Manifest, options: InstallOptions) -> None:
    unit = ctx.path(UNIT_PATH)
    if ctx.path(DROPIN_DIR).exists():
        record.existed_path(DROPIN_DIR)
    if unit.exists() and not is_ollamactl_unit(unit.read_text(errors="replace")):
        backup = f"{layout.BACKUP_DIR}/ollama.service"
        _ensure_dir(ctx, record, layout.BACKUP_DIR, why="keep the replaced unit")
        record.created_path(backup)
        ctx.runner.write_file(ctx.path(backup), unit.read_bytes(), backup=False,
                              why="copy of the unit --force replaces")
        record.replaced_files[UNIT_PATH] = backup
    elif not unit.exists():
        _ensure_dir(ctx, record, str(Path(UNIT_PATH).parent), why="systemd units")
        record.created_path(UNIT_PATH)
    spec = UnitSpec(
        exec_argv=tuple(record.exec_argv), user=record.user, group=record.group,
        home=layout.HOME,
        supplementary_groups=unit_groups(list(users.read_groups(ctx))),
        environment=(("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")),
                     ("HOME", layout.HOME)),
        read_write_paths=tuple(dict.fromkeys([layout.HOME, record.models_dir])),
    )
    manager = SystemdManager(ctx)
    if ctx.runner.write_file(unit, render_unit(spec), mode=0o644, why="the service unit"):
        manager.daemon_reload()
    if not manager.is_enabled():
        manager.enable()
    record.enabled = True


def _watchdog_files(ctx: Context, record: Manifest) -> None:
    paths = watchdog_paths(ctx)
    for directory, mode in ((paths.env_file.parent, 0o755), (paths.state_dir, 0o755),
                            (paths.log_file.parent, 0o755)):
        _ensure_dir(ctx, record, str(directory), mode=mode,
                    why="watchdog state, log and settings")


def _start(ctx: Context, record: Manifest, report: InstallReport,
           options: InstallOptions) -> None:
    manager = _manager(ctx, record)
    manager.start()
    if record.backend == "watchdog":
        report.notes.append("systemd is not running here: the server runs under ollamactl's "
                            "watchdog (`ollamactl status`, `ollamactl logs`)")
    if ctx.dry_run:
        return
    report.await_server(health.client_url(manager.env_store().read()), options.wait_s)


# -- uninstall -------------------------------------------------------------------------------

@dataclass
class UninstallPlan:
    record: Manifest
    steps: list[str]
    models_bytes: int
    keep_models: bool


def plan_uninstall(ctx: Context, *, purge: bool) -> UninstallPlan:
    """What uninstall would remove, for the confirmation prompt.

    Raises:
        UsageError: nothing ollamactl installed is here.
    """
    if ctx.host.os_name != LINUX:
        from ollamactl.install import platforms

        return platforms.plan_uninstall(ctx, purge=purge)
    record = manifest.load(ctx)
    if record is None:
        raise UsageError(f"no ollamactl install under {ctx.root} (no {layout.MANIFEST_PATH})",
                         hint="only what `ollamactl install` recorded can be uninstalled")
    refuse_links(ctx, record)
    models = ctx.path(record.models_dir)
    return plan_removal(record, models, [f"stop and disable the service ({record.backend})"],
                        purge=purge, shown=str(models))


def plan_removal(record: Manifest, models: Path, first_steps: list[str], *, purge: bool,
                 path_type: type[PurePath] = PurePosixPath, shown: str | None = None
                 ) -> UninstallPlan:
    """The steps that reverse ``record`` (every OS): what install created, newest first, and
    the models in ``models`` (shown as ``shown``) kept unless ``purge``."""
    size = tree_size(models)
    keep = not purge and models.is_dir() and any(models.iterdir())
    where = shown or record.models_dir
    steps = list(first_steps)
    steps += [f"remove {p}" for p in reversed(record.created_paths)
              if not (keep and holds(p, record.models_dir, path_type))]
    steps += [f"restore {p} from {b}" for p, b in record.replaced_files.items()]
    steps += [f"remove user {u}" for u in record.created_users]
    steps += [f"remove group {g}" for g in record.created_groups]
    if purge:
        steps.append(f"delete the models in {where} ({format_bytes(size)})")
    elif keep:
        steps.append(f"keep the models in {where} ({format_bytes(size)}; --purge deletes them)")
    return UninstallPlan(record, steps, size, keep)


def uninstall(ctx: Context, plan: UninstallPlan) -> list[str]:
    """Reverse exactly what the manifest lists; return what was done."""
    if ctx.host.os_name != LINUX:
        from ollamactl.install import platforms

        return platforms.uninstall(ctx, plan)
    record = plan.record
    if record.backend == "watchdog":
        _manager(ctx, record).stop()
    else:
        manager = SystemdManager(ctx)
        if not manager.staged:
            ctx.runner.run(manager.systemctl("stop", "ollama.service", why="stop the server",
                                              check=False))
        if record.enabled:
            manager.disable()
    replaced = dict(record.replaced_files)
    for target, backup in replaced.items():
        ctx.runner.write_file(ctx.path(target), ctx.path(backup).read_bytes(), backup=False,
                              why="put back the unit install replaced")
    dropin = ctx.path(DROPIN_DIR)
    if DROPIN_DIR not in record.existed_paths and dropin.exists() and record.backend != "watchdog":
        ctx.runner.remove(dropin, recursive=True, why="settings of the removed unit")
    for path in reversed(record.created_paths):
        if path in replaced or (plan.keep_models and holds(path, record.models_dir)):
            continue
        local = ctx.path(path)
        if path == UNIT_PATH:
            ctx.runner.remove(local.with_name(local.name + ".bak"), why="backup of the unit")
        recursive = path in _OWNED_TREES or path == record.models_dir \
            or Path(record.models_dir) in Path(path).parents
        if local.is_dir() and not local.is_symlink() and not recursive and any(local.iterdir()):
            continue  # a parent we created that now holds someone else's files
        ctx.runner.remove(local, recursive=recursive, why="created by install")
    models = ctx.path(record.models_dir)
    if not plan.keep_models and models.exists():
        ctx.runner.remove(models, recursive=True, why="--purge: the models")
    if record.backend != "watchdog":
        SystemdManager(ctx).daemon_reload()
    deleted_users, deleted_groups = set(record.created_users), set(record.created_groups)
    for member, group in record.created_memberships:
        if member not in deleted_users and group not in deleted_groups:
            users.remove_from_group(ctx, member, group)
    for name in record.created_users:
        if name in users.read_users(ctx):
            users.remove_user(ctx, name)
    for name in record.created_groups:
        if name in users.read_groups(ctx):
            users.remove_group(ctx, name)
    return [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]


_OWNED_TREES = frozenset({layout.HOME, layout.RUNTIME_DIR, layout.STATE_DIR,
                          layout.WATCHDOG_STATE_DIR, str(Path(layout.WATCHDOG_LOG).parent),
                          str(Path(layout.WATCHDOG_ENV).parent)})


def holds(path: str, directory: str, path_type: type[PurePath] = PurePosixPath) -> bool:
    """``path`` is ``directory`` or one of its parents (so removing it removes the models)."""
    return path_type(path) == path_type(directory) or path_type(path) in \
        path_type(directory).parents


def tree_size(path: Path) -> int:
    if not path.exists():
        return 0
    total = 0
    for entry in [path, *path.rglob("*")]:
        if entry.is_file() and not entry.is_symlink():
            total += entry.stat().st_size
    return total


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"

