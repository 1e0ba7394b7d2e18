"""The service user and group, through the shadow tools (``useradd --root`` under a staging root).

Accounts are read from the target's ``/etc/passwd`` and ``/etc/group`` files (under ``--root``),
never from NSS, so a staged tree answers for itself. Every change runs through ``ctx.runner``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ollamactl.context import Context
from ollamactl.system import cmd


@dataclass(frozen=True)
class Account:
    """One passwd entry, with the supplementary groups from the group file."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...]


def read_groups(ctx: Context) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    for fields in _entries(ctx.path("/etc/group"), 4):
        if fields[2].isdigit():
            members = tuple(m for m in fields[3].split(",") if m)
            groups[fields[0]] = Group(fields[0], int(fields[2]), members)
    return groups


def read_users(ctx: Context) -> dict[str, Account]:
    groups = read_groups(ctx).values()
    users: dict[str, Account] = {}
    for fields in _entries(ctx.path("/etc/passwd"), 7):
        if fields[2].isdigit() and fields[3].isdigit():
            name = fields[0]
            extra = tuple(g.gid for g in groups if name in g.members)
            users[name] = Account(name, int(fields[2]), int(fields[3]), fields[5], fields[6],
                                  extra)
    return users


def _entries(path: Path, width: int) -> list[list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= width and not line.startswith(("#", "+", "-")):
            rows.append(fields)
    return rows


def _root(ctx: Context) -> tuple[str, ...]:
    return ("--root", str(ctx.root)) if ctx.root != Path("/") else ()


def add_group(ctx: Context, name: str) -> None:
    ctx.runner.run(cmd("groupadd", *_root(ctx), "--system", name,
                       why=f"group {name} for the service"))


def add_user(ctx: Context, name: str, *, group: str, home: str, shell: str) -> None:
    """A system user with no login shell whose home is created (``useradd -r -s /bin/false -m
    -d /usr/share/ollama``, as the seed does; the group exists first, so no ``-U``)."""
    ctx.runner.run(cmd("useradd", *_root(ctx), "--system", "--shell", shell, "--gid", group,
                       "--create-home", "--home-dir", home, name,
                       why=f"system user {name} that runs the server"))


def add_to_group(ctx: Context, user: str, group: str) -> None:
    ctx.runner.run(cmd("usermod", *_root(ctx), "--append", "--groups", group, user,
                       why=f"add {user} to {group}"))


def remove_from_group(ctx: Context, user: str, group: str) -> None:
    ctx.runner.run(cmd("gpasswd", *_root(ctx), "--delete", user, group,
                       why=f"take {user} out of {group}"))


def remove_user(ctx: Context, name: str) -> None:
    ctx.runner.run(cmd("userdel", *_root(ctx), name, why=f"remove the user {name}"))


def remove_group(ctx: Context, name: str) -> None:
    ctx.runner.run(cmd("groupdel", *_root(ctx), name, why=f"remove the group {name}"))


def can_access(path: Path, account: Account, *, want: int) -> bool:
    """Whether ``account`` has ``want`` (os.R_OK | os.W_OK | os.X_OK bits) on ``path``, from
    its mode bits (the check works on a staged tree, whose users the kernel does not know).
    POSIX ACLs are not read: a denial here may be lifted by an ACL (doctor says so)."""
    if account.uid == 0:
        return True
    st = path.stat()
    if st.st_uid == account.uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid == account.gid or st.st_gid in account.groups:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & want == want


def blocked_parents(path: Path, account: Account, *, stop_at: Path) -> list[Path]:
    """Directories from ``stop_at`` down to ``path``'s parent that ``account`` cannot enter."""
    blocked = []
    for parent in reversed(path.parents):
        if parent != stop_at and stop_at not in parent.parents:
            continue
        if parent.is_dir() and not can_access(parent, account, want=os.X_OK):
            blocked.append(parent)
    return blocked


def is_dir_writable(path: Path, account: Account) -> bool:
    return path.is_dir() and stat.S_ISDIR(path.stat().st_mode) \
        and can_access(path, account, want=os.W_OK | os.X_OK)
