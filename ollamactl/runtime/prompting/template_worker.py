"""Template worker processes: prompts are rendered here, never in the server process.

A chat template is code from whoever made the model or sent the request (``template`` in
/api/generate, TEMPLATE in /api/create, a GGUF's ``tokenizer.chat_template``). Jinja's sandbox
keeps it from Python's internals, not from unbounded work: ``'a' * 10**9`` or
``10 ** (10 ** 8)`` is one C call, nested loops are a product. :mod:`render` bounds steps,
time, output and the size of such operations inside the render; this module adds what only a
process boundary gives:

- the worker's address space is capped (``RLIMIT_AS``, :data:`MEMORY_LIMIT_BYTES`), so a huge
  allocation is a MemoryError (a 400), not the host's memory;
- the server waits at most :data:`KILL_AFTER_S` for an answer, then kills the worker (stuck in
  one C call) and answers 400; the next render starts a fresh one;
- the server's event loop never runs template code, so ``/api/version`` and streams go on.

Workers are ``python -I -m ollamactl.runtime.prompting.template_worker``, started on first use,
at most :data:`WORKERS` rendering at once; each serves framed JSON
(:mod:`~ollamactl.runtime.ipc`'s frames) on its stdin and stdout and exits when its stdin
closes.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import IO, Any

from ollamactl.humanize import mib
from ollamactl.runtime.ipc import HEADER, ProtocolError, decode_payload, frame_length
from ollamactl.runtime.prompting.render import RENDER_TIMEOUT_S, TemplateError, render_job

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.template_worker")

WORKERS = 2                          # renders at once: each takes milliseconds
MEMORY_LIMIT_BYTES = 1 << 30         # a worker's address space (32 MiB bodies fit many times)
KILL_AFTER_S = RENDER_TIMEOUT_S + 2  # past the render's own time budget: stuck in C code


def _frame(message: Mapping[str, Any]) -> bytes:
    """A frame with ASCII JSON: lone surrogates in request text survive the trip."""
    payload = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(payload)) + payload


def _read_frame(stream: IO[bytes]) -> dict[str, Any] | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    return decode_payload(stream.read(frame_length(header)))


# -- server side ------------------------------------------------------------------------------

class _Worker:
    """One worker process and the thread that reads its answers."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "ollamactl.runtime.prompting.template_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, name="template-worker-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while (reply := _read_frame(self.proc.stdout)) is not None:
                self.replies.put(reply)
        except (OSError, ValueError, ProtocolError):
            pass
        self.replies.put(None)

    def call(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """The worker's answer, or None when it died or ran past KILL_AFTER_S (killed)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(_frame(job))
            self.proc.stdin.flush()
            return self.replies.get(timeout=KILL_AFTER_S)
        except (OSError, queue.Empty):
            return None

    def close(self, *, kill: bool = False) -> None:
        with contextlib.suppress(OSError):
            if kill:
                self.proc.kill()
            elif self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class _Pool:
    """Idle workers, and a bound on renders in flight (a caller past it waits)."""

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(size)
        self.idle: list[_Worker] = []
        self.warmed = False

    def render(self, job: Mapping[str, Any]) -> dict[str, Any]:
        with self.slots:
            with self.lock:
                worker = self.idle.pop() if self.idle else None
            if worker is None or worker.proc.poll() is not None:
                worker = _Worker()
            reply = worker.call(job)
            if reply is not None and "bug" in reply:
                log.error("template worker failed: %s", reply["bug"])
            if reply is None or reply.get("recycle"):
                worker.close(kill=True)  # stuck, dead, or past a budget mid-library: replace
            else:
                with self.lock:
                    self.idle.append(worker)
        if reply is None:
            raise TemplateError(f"template: the render was stopped (it ran past {KILL_AFTER_S:g} "
                                "s, or its worker failed)")
        if "error" in reply:
            raise TemplateError(str(reply["error"]))
        return reply

    def warm(self) -> None:
        """Start one worker ahead of the first render; later calls do nothing."""
        with self.lock:
            if not self.warmed:
                self.warmed = True
                self.idle.append(_Worker())

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()


_pool = _Pool(WORKERS)
atexit.register(_pool.close)


def warm() -> None:
    """Have a worker starting before the first render: the server calls this when a request
    that renders arrives, so the worker's start (~50 ms of a core) runs beside the request's
    model lookup. Not at server start, where on a small machine it took a core from the
    server's own start and the first model load."""
    _pool.warm()


def render(job: Mapping[str, Any]) -> dict[str, Any]:
    """Render ``job`` (see :func:`render.render_job`) in a worker: ``{"segments": [[text,
    parse_special], ...], "warnings": [...]}``. Blocks: call it off the event loop.

    Raises:
        TemplateError: the template failed or passed a budget.
    """
    return _pool.render(job)


# -- worker side ------------------------------------------------------------------------------

def _limit_memory() -> None:
    """Cap this process's address space where the platform has RLIMIT_AS (Linux, BSDs)."""
    with contextlib.suppress(ImportError, AttributeError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _serve(job: Mapping[str, Any]) -> dict[str, Any]:
    try:
        prompt, warnings = render_job(job)
        return {"segments": [list(segment) for segment in prompt.segments],
                "warnings": warnings}
    except TemplateError as exc:
        return {"error": str(exc)}
    except MemoryError:  # the heap may stay fragmented and large: this worker is replaced
        return {"error": f"template: needed more than {mib(MEMORY_LIMIT_BYTES)} of memory",
                "recycle": True}
    except Exception:  # a bug: its traceback goes to the server's log, through its formatter
        return {"error": "template: the render failed (see the server log)",
                "bug": traceback.format_exc(), "recycle": True}


def main() -> int:
    """Serve renders until stdin closes; Ctrl-C in the server's terminal is the server's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_memory()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (job := _read_frame(stdin)) is not None:
        reply = _serve(job)
        try:
            data = _frame(reply)
        except MemoryError:
            data = _frame({"error": "template: output too large", "recycle": True})
        stdout.write(data)
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
