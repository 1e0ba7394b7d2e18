"""Helpers shared by the POSIX backends: process identity (pid + start time) and clean stops.

A pid alone is not an identity: after a crash the number may belong to another process. A
:class:`ProcessIdentity` pairs it with the process's start time, checked before every signal
(as psutil does before ``kill``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import psutil

from ollamactl.system import atomic_write

_START_TIME_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as pid plus start time (``psutil.Process.create_time()``, unix seconds)."""

    pid: int
    started_at: float

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        return cls(pid, psutil.Process(pid).create_time())

    def process(self) -> psutil.Process | None:
        """The live process this identity names, or None (gone, zombie, or pid reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started_at) > _START_TIME_TOLERANCE_S:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return proc

    def is_alive(self) -> bool:
        return self.process() is not None

    def as_dict(self) -> dict[str, float]:
        return {"pid": self.pid, "started_at": self.started_at}


def write_pid_file(path: Path, identity: ProcessIdentity) -> None:
    """Write ``{"pid": N, "started_at": T}`` atomically."""
    atomic_write(path, json.dumps(identity.as_dict()).encode(), mode=0o644, backup=False)


def read_pid_file(path: Path) -> ProcessIdentity | None:
    """The identity in a pid file; None when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        return ProcessIdentity(int(data["pid"]), float(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def terminate_tree(root: psutil.Process, *, timeout_s: float,
                   process_group: int | None = None) -> list[psutil.Process]:
    """SIGTERM ``root`` and its descendants, wait ``timeout_s``, then SIGKILL survivors.

    ``process_group`` (the root's own session/group, when it was started with one) is swept at
    the end too, so children that were reparented away from ``root`` are not left behind.
    Returns the processes that had to be killed.
    """
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    if process_group is not None:
        kill_process_group(process_group)
    return alive


def kill_process_group(pgid: int) -> None:
    """SIGKILL whatever is left in process group ``pgid`` (orphaned runners of a dead server)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
