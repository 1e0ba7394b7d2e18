"""Users and groups as the service sees them (``id``, ``getent group``), for permission checks."""

from __future__ import annotations

import os


def user_ids(name: str) -> tuple[int, set[int]] | None:
    """(uid, every gid) of a user (``id <name>``), or None when it does not exist."""
    try:
        import grp
        import pwd
    except ImportError:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return entry.pw_uid, gids


def group_members(group: str) -> set[str]:
    """Users in ``group``: its member list plus users whose primary group it is."""
    try:
        import grp
        import pwd
    except ImportError:
        return set()
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return set()
    primary = {u.pw_name for u in pwd.getpwall() if u.pw_gid == entry.gr_gid}
    return set(entry.gr_mem) | primary


def may(st: os.stat_result, uid: int, gids: set[int], bits: int) -> bool:
    """Would ``uid`` get the ``bits`` (r=4, w=2, x=1) on a file with this stat? (root always.)"""
    if uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == uid:
        granted = (mode >> 6) & 7
    elif st.st_gid in gids:
        granted = (mode >> 3) & 7
    else:
        granted = mode & 7
    return granted & bits == bits
