"""Model storage checks: the directory and its permissions, free space, the store (the unit's
sandbox is checked by :mod:`ollamactl.service.linux_systemd`)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ollamactl.doctor.accounts import may, user_ids
from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.humanize import GIB, gib
from ollamactl.system import UnsafePath, check_links

BLOB_NAME = re.compile(r"^sha256-[0-9a-f]{64}(-partial(-\d+)?)?$")


@check("models.dir", "Models directory usable by the service user", area="storage")
def models_dir(p: Probe) -> Finding:
    """C12: the directory exists, every parent is traversable and it is writable."""
    target = p.models_dir
    user = p.service_user
    if user is None:
        if not target.exists():
            return warn(f"{target} does not exist yet", "it is created on the first pull")
        if os.access(target, os.W_OK | os.X_OK):
            return ok(f"{target} is writable (server started by hand runs as you)")
        return fail(f"{target} is not writable by you",
                    fix=Fix("fix its owner", (("chown", "-R", str(os.getuid()), str(target)),)))
    ids = user_ids(user)
    if ids is None:
        return fail(f"the service user {user!r} does not exist",
                    fix=Fix("reinstall to create it", (("ollamactl", "install"),)))
    uid, gids = ids
    shown = Path(p.models_path)     # the path on the target system; ``target`` is under --root
    try:
        check_links(target)
    except UnsafePath as exc:
        return fail(exc.message, "the service user can put a link anywhere in its home; root "
                    "never creates or chowns through one", Fix(exc.hint or "remove the link"))
    current = Path("/")
    for part in shown.parts[1:]:
        current = current / part
        try:
            st = p.path(str(current)).stat()
        except FileNotFoundError:
            parent = p.path(str(current.parent))
            return fail(f"{current} does not exist",
                        fix=Fix("create it for the service user",
                                (("install", "-d", "-o", user, "-m", "0755", str(shown)),),
                                safe=parent.is_dir()))
        if current != shown and not may(st, uid, gids, 1):
            return fail(f"{user} cannot traverse {current} (mode {stat.filemode(st.st_mode)})",
                        "the server then fails with `mkdir ...: permission denied`",
                        Fix("let others traverse it", (("chmod", "o+x", str(current)),)))
    st = target.stat()
    if not may(st, uid, gids, 3):
        return fail(f"{user} cannot write {shown}",
                    fix=Fix("give it to the service user",
                            (("chown", "-R", f"{user}:", str(shown)),), safe=True))
    return ok(f"{shown} is writable by {user}")


@check("models.disk-space", "Free space for models", area="storage")
def disk_space(p: Probe) -> Finding:
    """C14: ``df`` of the models file system."""
    where = p.models_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    fs = os.statvfs(where)
    free = fs.f_bavail * fs.f_frsize
    largest = max((m.size_bytes for m in p.manifests), default=0)
    text = f"{gib(free)} free on the file system of {where}"
    fix = Fix("reclaim space (`ollamactl models gc`) or move OLLAMA_MODELS to a bigger disk")
    if free < GIB:
        return fail(text, fix=fix)
    if largest and free < largest:
        return warn(text, f"less than the largest model ({gib(largest)})", fix)
    if free < 20 * GIB:
        return warn(text, "most 7B+ models need 4-40 GiB each", fix)
    return ok(text)


@check("models.store", "Model store consistent", area="storage")
def store(p: Probe) -> Finding:
    """C15: partial downloads, blobs no manifest uses, manifests whose blobs are missing."""
    blobs_dir = p.models_dir / "blobs"
    if not blobs_dir.is_dir():
        return skip(f"no model store at {p.models_dir} yet")
    blobs = {b.name: b for b in blobs_dir.iterdir() if b.is_file()}
    wanted = {d.replace(":", "-") for m in p.manifests for d in m.digests}
    missing = sorted({m.name for m in p.manifests
                      for d in m.digests if d.replace(":", "-") not in blobs})
    partial = [b for n, b in blobs.items() if "-partial" in n]
    orphans = [b for n, b in blobs.items() if "-partial" not in n and n not in wanted
               and BLOB_NAME.match(n)]
    reclaim = sum(b.stat().st_size for b in (*partial, *orphans))
    if missing:
        return fail(f"model(s) with missing blobs: {', '.join(missing)}",
                    fix=Fix("pull them again, or remove them with `ollamactl rm`"))
    if partial or orphans:
        return warn(f"{gib(reclaim, 2)} reclaimable: {len(partial)} partial download(s), "
                    f"{len(orphans)} unused blob(s)",
                    fix=Fix("`ollamactl models gc` with the service stopped"))
    return ok(f"{len(p.manifests)} model(s), {len(blobs)} blob(s), nothing stray")


@check("models.blob-names", "Blob names are digests", area="storage")
def blob_names(p: Probe) -> Finding:
    """C16: every file in blobs/ is ``sha256-<64 hex>`` (or a partial download of one)."""
    blobs_dir = p.models_dir / "blobs"
    if not blobs_dir.is_dir():
        return skip(f"no model store at {p.models_dir} yet")
    stray = sorted(b.name for b in blobs_dir.iterdir() if not BLOB_NAME.match(b.name))
    if stray:
        return fail(f"{len(stray)} stray name(s) in blobs/: {', '.join(stray[:5])}",
                    "names that are not digests come from path-traversal artefacts or manual "
                    "copies", Fix(f"move them out of {blobs_dir} (quarantine)"))
    return ok("every blob is named by its digest")
