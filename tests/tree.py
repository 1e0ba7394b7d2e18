"""Snapshots of a directory tree, to prove that an operation changed nothing (or undid itself)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

#: Files the shadow tools rewrite on every call (their own backups and lock): compared by
#: presence only, since their content is "the version before the last change".
SHADOW_SIDE_FILES = frozenset({"etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-",
                               "etc/.pwd.lock", "etc/subuid-", "etc/subgid-"})


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ``root`` -> (type, mode, uid, gid, content digest or link target)."""
    entries: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            elif rel in SHADOW_SIDE_FILES:
                entries[rel] = ("shadow side file",)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, digest)
    return entries


def diff(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]
         ) -> list[str]:
    """Readable differences ("+ path", "- path", "~ path"), empty when equal."""
    lines = [f"- {p}" for p in sorted(before.keys() - after.keys())]
    lines += [f"+ {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"~ {p}: {before[p]} -> {after[p]}" for p in sorted(before.keys() & after.keys())
              if before[p] != after[p]]
    return lines
