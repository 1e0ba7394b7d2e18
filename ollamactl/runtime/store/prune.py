"""Start-up cleaning of the store: stray temp and invalid files in blobs/, unreferenced blobs past
an age, partial downloads past that age, empty manifest folders (OLLAMA_NOPRUNE turns it off).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path

from ollamactl.errors import ModelError
from ollamactl.runtime.store.manifests import Store

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.store")

PRUNE_AGE_S = 3600.0
_BLOB_NAME_RE = re.compile(r"^sha256-[0-9a-f]{64}$")
PARTIAL_SUFFIX = "-partial"  # registry downloads in progress: blobs/sha256-<hex>-partial


def prune(store: Store, *, noprune: bool | None = None,
          older_than_s: float = PRUNE_AGE_S) -> list[Path]:
    """Start-up cleaning: stray temp/invalid files in blobs/, unreferenced blobs older than
    ``older_than_s``, empty manifest folders. Returns what was removed.

    ``noprune`` None reads OLLAMA_NOPRUNE (any value but false/0/empty means on).
    """
    if noprune is None:
        value = os.environ.get("OLLAMA_NOPRUNE", "").strip().lower()
        noprune = value not in ("", "0", "f", "false")
    if noprune or not store.blobs_dir.is_dir():
        return []
    try:
        referenced = store.referenced_digests()
    except ModelError as exc:
        log.warning("not pruning: %s", exc)
        return []
    removed: list[Path] = []
    now = time.time()
    for path in sorted(store.blobs_dir.iterdir()):
        if path.is_dir():
            continue
        name = path.name
        blob_name = name.removesuffix(PARTIAL_SUFFIX)
        if _BLOB_NAME_RE.match(blob_name):
            try:
                old = now - path.stat().st_mtime > older_than_s
            except OSError:
                continue
            if not old:  # fresh orphans, and partial downloads a restarted pull resumes
                continue
            if name == blob_name and "sha256:" + name[len("sha256-"):] in referenced:
                continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    if store.manifests_dir.is_dir():
        for directory in sorted(store.manifests_dir.rglob("*"), reverse=True):
            if directory.is_dir() and not directory.is_symlink():
                with contextlib.suppress(OSError):
                    directory.rmdir()
    if removed:
        log.info("pruned %d file(s) from %s", len(removed), store.blobs_dir)
    return removed
