"""What install, update and uninstall share on every OS: options, reports, plans and the steps.

The steps themselves belong to each platform unit (:mod:`ollamactl.service.platforms` picks
one); this package holds only what is OS-neutral: :class:`InstallOptions`, :class:`InstallReport`,
:class:`UninstallPlan`, the manifest (:mod:`.manifest`), the idempotent steps every unit runs
(:func:`ensure_dir`, :func:`save_manifest`, :func:`remove_created`, :func:`plan_removal`), the
runtime the service runs (:mod:`.runtime`), accounts (:mod:`.users`) and the models directory's
access checks (:mod:`.models_dir`). Nothing here imports ``ollamactl.service``: the units use
these helpers, never the other way round.

Every change runs through ``ctx.runner`` (so ``--dry-run`` only prints it) and under
``ctx.root`` (so ``--root DIR`` stages it). Running install again is an update: what is already
right is left alone, and only what changed is rewritten, between a stop and a start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

from ollamactl import __version__
from ollamactl.client import Client, ServerVersion
from ollamactl.context import Context
from ollamactl.humanize import bytes_si_one_decimal
from ollamactl.install.manifest import Manifest

#: Maps a path on the target system to where it is on this machine (``ctx.path``, or
#: ``<root>/C/...`` for a Windows path).
LocalPath = Callable[[PurePath], Path]


@dataclass(frozen=True)
class InstallOptions:
    force: bool = False              # replace a real Ollama's unit / ignore its binary
    self_contained: bool = False     # always build /opt/ollamactl
    wait_s: float = 120.0            # how long to wait for GET / after the start
    #: macOS: a LaunchDaemon; Windows: a service; False: per user; None: the installed flavour
    #: (``ollamactl update``)
    system: bool | None = False


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
        with Client(url, connect_timeout_s=2.0, read_timeout_s=2.0) as client:
            client.wait_until_up(timeout_s)
            answer = ServerVersion.from_json(client.get("/api/version").json())
        self.version = str(answer) if answer is not None else None
        if answer is not None and not answer.is_this_ollamactl:
            self.notes.append(f"the server at {url} reports {answer}, not ollamactl "
                              f"{__version__}: another server holds the port or an old one "
                              "is still running (`ollamactl restart`)")


@dataclass
class UninstallPlan:
    record: Manifest
    steps: list[str]
    models_bytes: int
    keep_models: bool


# -- steps every platform runs ---------------------------------------------------------------

def ensure_dir(ctx: Context, record: Manifest, target: PurePath, local: LocalPath, *,
               why: str, mode: int = 0o755, owner: tuple[int, int] | None = None) -> None:
    """Create ``target`` and its missing parents, recording each one created; ``owner``
    (uid, gid) is given to ``target`` itself (not in a dry run: the account may not exist)."""
    for path in [*reversed(target.parents), target]:
        if path != path.parent and not local(path).exists():
            record.created_path(str(path))
    if owner is None or ctx.dry_run:
        ctx.runner.make_dir(local(target), mode=mode, why=why)
    else:
        ctx.runner.make_dir(local(target), mode=mode, owner=owner, why=why)
        ctx.runner.chown(local(target), owner, why=why)


def save_manifest(ctx: Context, record: Manifest, target: PurePath, local: LocalPath) -> None:
    """Write the manifest to ``target`` (recorded as created when install makes it)."""
    if not local(target).exists():
        record.created_path(str(target))
    ctx.runner.write_file(local(target), record.to_json(), mode=0o644, backup=False,
                          why="remember what install created")


def remove_created(ctx: Context, record: Manifest, local: LocalPath, path_type: type[PurePath],
                   *, recursive: Callable[[str], bool], keep: Callable[[str], bool],
                   before: Callable[[str, Path], None] | None = None) -> None:
    """Remove what the manifest lists, newest first, except what ``keep`` holds back; a
    directory we created that now holds someone else's files stays (only what ``recursive``
    names is removed whole). ``before`` runs just before a path goes (a backup beside it)."""
    for text in reversed(record.created_paths):
        if keep(text):
            continue
        path = local(path_type(text))
        if before is not None:
            before(text, path)
        whole = recursive(text)
        if path.is_dir() and not path.is_symlink() and not whole and any(path.iterdir()):
            continue
        ctx.runner.remove(path, recursive=whole, why="created by install")


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
    shown_size = bytes_si_one_decimal(size)
    if purge:
        steps.append(f"delete the models in {where} ({shown_size})")
    elif keep:
        steps.append(f"keep the models in {where} ({shown_size}; --purge deletes them)")
    return UninstallPlan(record, steps, size, keep)


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
