"""Can the service user use a models directory? (users-and-security A12: the most repeated Linux
failure is a parent the ``ollama`` user cannot traverse.) Each problem comes with its fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ollamactl.context import Context
from ollamactl.install.users import Account, blocked_parents, is_dir_writable
from ollamactl.system import cmd


@dataclass(frozen=True)
class Problem:
    """What is wrong, and the change that fixes it (run through ``ctx.runner``)."""

    message: str
    fix: str
    apply: Callable[[], object]


def check(ctx: Context, directory: str, account: Account) -> list[Problem]:
    """Problems that would stop ``account`` from using ``directory`` (a target path)."""
    target = ctx.path(directory)
    problems: list[Problem] = []
    for parent in blocked_parents(target, account, stop_at=ctx.path("/")):
        problems.append(_traverse(ctx, parent, account))
    if target.exists():
        if not is_dir_writable(target, account):
            problems.append(Problem(
                f"{account.name} cannot write {target}",
                f"chown -R {account.name}:{account.gid} {target}",
                lambda: ctx.runner.chown(target, (account.uid, account.gid), recursive=True,
                                         why="models owned by the service user")))
    else:
        problems.append(Problem(
            f"{target} does not exist", f"create it owned by {account.name}",
            lambda: ctx.runner.make_dir(target, owner=None if ctx.dry_run else
                                        (account.uid, account.gid),
                                        why="models dir for the service user")))
    return problems


def _traverse(ctx: Context, parent: Path, account: Account) -> Problem:
    if shutil.which("setfacl"):
        fix: tuple[str, ...] = ("setfacl", "-m", f"u:{account.name}:x", str(parent))
    else:
        fix = ("chmod", "o+x", str(parent))
    return Problem(f"{account.name} cannot enter {parent}", " ".join(fix),
                   lambda: ctx.runner.run(cmd(*fix, why=f"let {account.name} reach the models")))
