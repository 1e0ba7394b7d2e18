"""``doctor --fix``: the safe fixes of failing and warning findings, applied through the runner.

Fixes run as root, so none may act through what another user controls: ``ollamactl ...``
re-runs this ollamactl isolated (``-I``, from ``/``: nothing from the caller's directory or
PYTHON* variables) and under the same ``--root``; ``chown -R`` and ``install -d`` are done here
through the link-safe runner calls, on the tree under ``--root``; any other program acts on this
host, so a staged doctor (``--root``) does not run it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ollamactl.context import Context
from ollamactl.doctor.finding import FAIL, WARN, Finding, Fix
from ollamactl.errors import OllamactlError
from ollamactl.system import Cmd


@dataclass(frozen=True)
class Applied:
    finding_id: str
    command: tuple[str, ...]
    ok: bool
    error: str = ""


def safe_fixes(findings: Iterable[Finding]) -> list[tuple[Finding, Fix]]:
    """Findings that warn or fail and carry a fix marked safe, with commands to run."""
    return [(f, f.fix) for f in findings
            if f.status in (FAIL, WARN) and f.fix is not None and f.fix.safe and f.fix.commands]


def argv_for(ctx: Context, command: tuple[str, ...]) -> tuple[str, ...]:
    """``ollamactl ...`` runs this very ollamactl (its interpreter, isolated), not whatever is
    on PATH, on the same tree (``--root``)."""
    if command and command[0] == "ollamactl":
        staged = ("--root", str(ctx.root)) if ctx.root != Path("/") else ()
        return (sys.executable, "-I", "-m", "ollamactl", *staged, *command[1:])
    return command


def apply_fixes(ctx: Context, fixes: list[tuple[Finding, Fix]]) -> list[Applied]:
    """Run each fix's commands in order; a failing command stops that fix, not the others."""
    applied = []
    for finding, fix in fixes:
        for command in fix.commands:
            try:
                _apply(ctx, command, why=f"doctor fix for {finding.id}")
            except OllamactlError as exc:
                applied.append(Applied(finding.id, command, False, exc.message))
                break
            applied.append(Applied(finding.id, command, True))
    return applied


def _apply(ctx: Context, command: tuple[str, ...], *, why: str) -> None:
    if command[:2] == ("chown", "-R") and len(command) == 4:
        ctx.runner.chown(ctx.path(command[3]), _owner(ctx, command[2]), recursive=True, why=why)
    elif command[:2] == ("install", "-d") and len(command) == 7 \
            and command[2:6:2] == ("-o", "-m"):
        ctx.runner.make_dir(ctx.path(command[6]), mode=int(command[5], 8),
                            owner=_owner(ctx, command[3]), why=why)
    elif command[0] != "ollamactl" and ctx.root != Path("/"):
        raise OllamactlError(f"not run under --root {ctx.root}: it would act on this host")
    else:
        ctx.runner.run(Cmd(argv_for(ctx, command), why=why, cwd="/"))


def _owner(ctx: Context, spec: str) -> tuple[int, int]:
    """``USER[:[GROUP]]`` as (uid, gid) from the accounts under ``--root``."""
    from ollamactl.install import users

    name, _, group = spec.partition(":")
    account = users.read_users(ctx).get(name)
    found = users.read_groups(ctx).get(group) if group else None
    if account is None or (group and found is None):
        raise OllamactlError(f"no account {spec!r} under {ctx.root}")
    return account.uid, found.gid if found is not None else account.gid
