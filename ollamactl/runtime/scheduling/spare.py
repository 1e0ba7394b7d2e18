"""The spare runner, started by ``ollamactl serve`` before anything else: a runner process that
imports llama.cpp (~0.15 s of a core) while the server imports its own modules, then waits
for the first load's config on stdin.

Kept apart from :mod:`runner_client` (asyncio and the CPU builds) so that the server starts it
after nothing but the interpreter and this module; the event loop adopts it later
(:class:`runner_client.SpareRunner`).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess

from ollamactl.runtime.runner.config import RUNNER_COMMAND, SPARE_FLAG, STOP_GRACE_S

log = logging.getLogger("ollamactl.runtime.runner_client")


def start_spare() -> subprocess.Popen[bytes] | None:
    """Start the spare runner (:data:`SPARE_FLAG`); None where it cannot start (a load then
    starts its own runner)."""
    try:
        return subprocess.Popen([*RUNNER_COMMAND, SPARE_FLAG], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
    except OSError as exc:
        log.warning("no spare runner: %s", exc)
        return None


def end_spare(popen: subprocess.Popen[bytes]) -> None:
    """End a spare nobody adopted or took (the server did not get to serve): closing its
    stdin ends it."""
    if popen.poll() is None:
        with contextlib.suppress(OSError):
            if popen.stdin is not None:
                popen.stdin.close()
        try:
            popen.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
