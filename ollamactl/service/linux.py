"""What the two Linux platform units share: the layout and the install and uninstall steps.

Install makes the group and system user ``ollama`` (home ``/usr/share/ollama``), the models
directory, a runtime the service user can run (``/opt/ollamactl`` when this one is not), then
hands over to the unit for the service itself: a systemd unit (:mod:`.linux_systemd`) or
ollamactl's watchdog (:mod:`.linux_watchdog`). Everything is recorded in
``/var/lib/ollamactl/install-manifest.json``; uninstall reverses exactly that.
"""

from __future__ import annotations

import os
import shutil
from abc import abstractmethod
from pathlib import Path, PurePosixPath
from typing import ClassVar

from ollamactl.client import client_url
from ollamactl.errors import OllamactlError, PrivilegeError, UsageError
from ollamactl.humanize import mib
from ollamactl.identity import GPU_GROUPS, SERVICE_GROUP, SERVICE_HOME, SERVICE_USER
from ollamactl.install import (
    InstallOptions,
    InstallReport,
    UninstallPlan,
    ensure_dir,
    holds,
    plan_removal,
    remove_created,
    runtime,
    users,
)
from ollamactl.install.manifest import Manifest
from ollamactl.service import systemd
from ollamactl.service.base import Platform, ServiceManager
from ollamactl.system import check_links

MIN_FREE_BYTES = 512 * 1024 * 1024


class LinuxLayout:
    """Where the Linux install puts things (paths on the target system, before ``--root``)."""

    service_user = SERVICE_USER
    service_group = SERVICE_GROUP
    service_shell = "/bin/false"
    home = SERVICE_HOME                          # /usr/share/ollama, as the seed's useradd -d
    models_dir = f"{SERVICE_HOME}/.ollama/models"
    runtime_dir = runtime.RUNTIME_DIR            # a self-contained runtime, when one is needed
    state_dir = "/var/lib/ollamactl"
    manifest_path = f"{state_dir}/install-manifest.json"
    backup_dir = f"{state_dir}/backup"           # files install replaced with --force
    watchdog_state_dir = f"{state_dir}/watchdog"
    watchdog_log = "/var/log/ollamactl/ollama.log"
    watchdog_env = "/etc/ollamactl/ollama.env"
    #: A real Ollama's unit is never replaced without --force, whichever unit installs.
    unit_path = systemd.UNIT_PATH
    dropin_dir = systemd.DROPIN_DIR
    #: Where a real Ollama puts its binary (install.sh: the first of these on PATH).
    ollama_binaries = ("/usr/local/bin/ollama", "/usr/bin/ollama", "/bin/ollama")
    #: GPU groups the service user joins where they exist (install.sh).
    gpu_groups = GPU_GROUPS
    #: Trees install owns whole: uninstall removes them with what is inside.
    owned_trees = frozenset({home, runtime_dir, state_dir, watchdog_state_dir,
                             str(PurePosixPath(watchdog_log).parent),
                             str(PurePosixPath(watchdog_env).parent)})

    @property
    def log_path(self) -> str | None:
        return None


class LinuxPlatform(Platform):
    """Install and uninstall on Linux; the units add the service itself (hooks below)."""

    has_procfs = True
    has_sysfs = True
    #: The manifest's backend -> the unit that installed it, so an install stays removable
    #: by its own steps when the host changed (systemd started or went away since).
    _by_backend: ClassVar[dict[str, type[LinuxPlatform]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for backend in getattr(cls, "backends", ()):
            LinuxPlatform._by_backend[backend] = cls

    # -- the units' part ------------------------------------------------------------------
    @property
    @abstractmethod
    def layout(self) -> LinuxLayout: ...

    @property
    @abstractmethod
    def backend(self) -> str:
        """What this install records as its backend (systemd, staged, watchdog)."""

    @abstractmethod
    def manager_for(self, record: Manifest) -> ServiceManager:
        """The service manager of the install ``record`` describes."""

    @abstractmethod
    def install_service(self, record: Manifest, options: InstallOptions) -> None:
        """The service itself: the unit, or the watchdog's directories."""

    @abstractmethod
    def stop_for_removal(self, record: Manifest) -> None:
        """Stop the service (and take it out of the boot) before its files go."""

    def remove_settings(self, record: Manifest) -> None:
        """Remove the persisted settings that live outside what install created."""
        return None

    def after_removal(self, record: Manifest) -> None:
        """What the service manager needs once the files are gone."""
        return None

    def started_note(self) -> str | None:
        """What to tell about the service once install started it."""
        return None

    # -- install --------------------------------------------------------------------------
    def prechecks(self, options: InstallOptions, existing: Manifest | None) -> list[str]:
        """Refuse what must not go ahead; return notes about what was found."""
        ctx, layout = self.ctx, self.layout
        if not ctx.host.is_root and not ctx.dry_run:
            raise PrivilegeError("install needs root: it creates a system user and a service",
                                 hint="run it with sudo (or try --dry-run to see the plan)")
        notes = [f"host: {ctx.host.describe()}"]
        if ctx.host.arch not in ("amd64", "arm64"):
            notes.append(f"architecture {ctx.host.arch}: untested, continuing")
        probe = ctx.root if ctx.root.exists() else Path("/")
        free = shutil.disk_usage(probe).free
        if free < MIN_FREE_BYTES:
            raise OllamactlError(f"only {mib(free)} free under {probe}",
                                 hint="free at least 512 MiB (models need much more)")
        unit = ctx.path(layout.unit_path)
        if unit.exists() and not systemd.is_ollamactl_unit(unit.read_text(errors="replace")):
            if not options.force:
                raise OllamactlError(f"{unit} belongs to another Ollama install; not replacing "
                                     "it", hint="uninstall that Ollama first, or pass --force "
                                                "(its unit is backed up and restored by "
                                                "`ollamactl uninstall`)")
            notes.append(f"replacing the foreign unit {unit} (--force); a copy is kept")
        for binary in layout.ollama_binaries:
            if ctx.path(binary).exists() and existing is None:
                if not options.force:
                    raise OllamactlError(f"a real Ollama is installed at {ctx.path(binary)}; "
                                         "both would serve port 11434",
                                         hint="uninstall it first, or pass --force to install "
                                              "beside it (stop its service yourself)")
                notes.append(f"a real Ollama is at {ctx.path(binary)} (left alone, --force)")
        return notes

    def install(self, options: InstallOptions) -> InstallReport:
        ctx, layout = self.ctx, self.layout
        existing = self.load_manifest()
        notes = self.prechecks(options, existing)
        backend = self.backend
        if existing is not None and existing.backend and existing.backend != backend:
            raise OllamactlError(f"installed for {existing.backend}, but this host now needs "
                                 f"{backend}", hint="run `ollamactl uninstall` first")
        record = existing or Manifest(backend=backend, user=layout.service_user,
                                      group=layout.service_group, models_dir=layout.models_dir)
        self.refuse_links(record)
        report = InstallReport(backend, update=existing is not None, notes=notes)
        if existing is not None and not self.staged:
            self.manager_for(record).stop()
        self._state_dir(record)
        self._accounts(record)
        self._models_dir(record)
        rt = self._runtime(record, options, report)
        if not self.staged and not ctx.dry_run:
            report.notes.extend(runtime.self_test(ctx, rt))
        record.exec_argv = rt.serve_argv()
        record.runtime_dir = layout.runtime_dir if rt.built else ""
        self.install_service(record, options)
        ctx.runner.write_file(self.manifest_file(), record.to_json(), mode=0o644,
                              why="remember what install created", backup=False)
        if self.staged:
            report.notes.append(f"staged under {ctx.root}: nothing was started")
        else:
            self._start(record, report, options)
        report.done = [step.render(done=not ctx.dry_run) for step in ctx.runner.plan]
        return report

    def refuse_links(self, record: Manifest) -> None:
        """Refuse before anything changes when a link another user could have placed sits on
        a path that install or uninstall acts on as root: the service user owns its home, and
        a chown or purge through its link would act on whatever the link points to.

        Raises:
            UnsafePath: naming the link.
        """
        for path in dict.fromkeys([record.models_dir, *record.created_paths,
                                   *self.layout.owned_trees]):
            check_links(self.ctx.path(path))

    def _ensure_dir(self, record: Manifest, target: str, *, mode: int = 0o755,
                    owner: tuple[int, int] | None = None, why: str = "") -> None:
        ensure_dir(self.ctx, record, PurePosixPath(target), self.local, mode=mode, owner=owner,
                   why=why)

    def _state_dir(self, record: Manifest) -> None:
        self._ensure_dir(record, self.layout.state_dir, why="ollamactl's install records")
        if not self.manifest_file().exists():
            record.created_path(self.layout.manifest_path)

    def _accounts(self, record: Manifest) -> None:
        ctx, layout = self.ctx, self.layout
        user, group = record.user, record.group
        if group not in users.read_groups(ctx):
            users.add_group(ctx, group)
            record.created_group(group)
        if user not in users.read_users(ctx):
            for path in [*reversed(Path(layout.home).parents), Path(layout.home)]:
                if str(path) != "/" and not ctx.path(str(path)).exists():
                    record.created_path(str(path))
            users.add_user(ctx, user, group=group, home=layout.home, shell=layout.service_shell)
            record.created_user(user)
        groups = users.read_groups(ctx)
        wanted = [(user, g) for g in layout.gpu_groups if g in groups]
        sudo_user = os.environ.get("SUDO_USER", "")
        if sudo_user and sudo_user != "root" and sudo_user in users.read_users(ctx):
            wanted.append((sudo_user, group))
        for member, target in wanted:
            if member not in groups.get(target, users.Group(target, -1, ())).members:
                if target == group and member == user:
                    continue
                users.add_to_group(ctx, member, target)
                record.created_membership(member, target)

    def _service_account(self, record: Manifest) -> users.Account | None:
        return users.read_users(self.ctx).get(record.user)

    def _models_dir(self, record: Manifest) -> None:
        """The models directory under the service's home, owned by the service user, down to
        the files: models an uninstall kept belong to the old ``ollama`` uid, and a new user
        with another uid could read them but never pull, create or delete again."""
        ctx, home = self.ctx, Path(self.layout.home)
        account = self._service_account(record)
        owner = (account.uid, account.gid) if account else None
        models = Path(record.models_dir)
        for path in [*reversed(models.parents), models]:
            if home in path.parents:
                self._ensure_dir(record, str(path), owner=owner,
                                 why="models, owned by the service")
        if owner is not None and home in models.parents and ctx.path(str(models)).is_dir():
            ctx.runner.chown(ctx.path(str(models)), owner, recursive=True,
                             why="models kept from an earlier install, for the service user")

    def _runtime(self, record: Manifest, options: InstallOptions,
                 report: InstallReport) -> runtime.Runtime:
        ctx, layout = self.ctx, self.layout
        account = self._service_account(record)
        staged = ctx.root if self.staged else None
        rt = runtime.current()
        # Before useradd (dry-run) judge as a user with no special rights: "other" mode bits.
        judged = account or users.Account(record.user, -2, -2, layout.home, layout.service_shell)
        problem = "--self-contained was asked for" if options.self_contained else ""
        if not problem:
            problem = runtime.why_unusable(rt, judged, hidden=systemd.is_under_home,
                                           staged_root=staged)
        if not problem and account is not None and staged is None and not ctx.dry_run:
            problem = runtime.verify_as_user(ctx, rt, record.user)
        if not problem and not record.runtime_dir:
            report.notes.append(f"runtime: {rt.prefix} (usable by {record.user})")
            return rt
        if problem:
            report.notes.append(f"runtime: {rt.prefix} is not usable by {record.user} "
                                f"({problem}); building {layout.runtime_dir}")
        for path in [*reversed(Path(layout.runtime_dir).parents), Path(layout.runtime_dir)]:
            if str(path) != "/" and not ctx.path(str(path)).exists():
                record.created_path(str(path))
        built = runtime.build(ctx)
        if account is not None and not ctx.dry_run:
            failure = runtime.why_unusable(built, account, hidden=systemd.is_under_home,
                                           staged_root=staged)
            if not failure and staged is None:
                failure = runtime.verify_as_user(ctx, built, record.user)
            if failure:
                raise OllamactlError(f"the runtime built in {layout.runtime_dir} does not run "
                                     f"as {record.user}: {failure}")
        return built

    def _start(self, record: Manifest, report: InstallReport, options: InstallOptions) -> None:
        manager = self.manager_for(record)
        manager.start()
        note = self.started_note()
        if note:
            report.notes.append(note)
        if self.ctx.dry_run:
            return
        report.await_server(client_url(manager.env_store().read()), options.wait_s)

    # -- uninstall ------------------------------------------------------------------------
    def plan_uninstall(self, *, purge: bool) -> UninstallPlan:
        record = self.load_manifest()
        if record is None:
            raise UsageError(f"no ollamactl install under {self.ctx.root} (no "
                             f"{self.layout.manifest_path})",
                             hint="only what `ollamactl install` recorded can be uninstalled")
        self.refuse_links(record)
        models = self.ctx.path(record.models_dir)
        return plan_removal(record, models, [f"stop and disable the service ({record.backend})"],
                            purge=purge, shown=str(models))

    def uninstall(self, plan: UninstallPlan) -> list[str]:
        ctx, record = self.ctx, plan.record
        owner = self._by_backend.get(record.backend, type(self))(ctx)
        owner.stop_for_removal(record)
        replaced = dict(record.replaced_files)
        for target, backup in replaced.items():
            ctx.runner.write_file(ctx.path(target), ctx.path(backup).read_bytes(), backup=False,
                                  why="put back the unit install replaced")
        owner.remove_settings(record)
        models_dir = record.models_dir

        def backup_beside(text: str, path: Path) -> None:
            if text == self.layout.unit_path:
                ctx.runner.remove(path.with_name(path.name + ".bak"), why="backup of the unit")

        remove_created(
            ctx, record, self.local, PurePosixPath,
            recursive=lambda p: p in self.layout.owned_trees or p == models_dir
            or Path(models_dir) in Path(p).parents,
            keep=lambda p: p in replaced or (plan.keep_models and holds(p, models_dir)),
            before=backup_beside)
        models = ctx.path(models_dir)
        if not plan.keep_models and models.exists():
            ctx.runner.remove(models, recursive=True, why="--purge: the models")
        owner.after_removal(record)
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

    # -- env set --------------------------------------------------------------------------
    def service_account(self) -> users.Account | None:
        """The service user (the manifest's, else ``ollama``) from ``/etc/passwd`` under
        ``--root``."""
        record = self.load_manifest()
        return users.read_users(self.ctx).get(record.user if record
                                              else self.layout.service_user)
