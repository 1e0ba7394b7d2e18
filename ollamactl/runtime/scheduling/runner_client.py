"""The server's handle to one runner subprocess: spawn, wait ready, stream sequences, stop.

Everything here runs on the server's event loop and never imports llama_cpp. One reader task
per runner dispatches frames to the sequence they belong to, so several sequences may be in
flight on one runner. When the runner dies every in-flight sequence fails with
:class:`RunnerDied`, whose message says how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import subprocess
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ollamactl.runtime.builds.variants import Choice, VariantError
from ollamactl.runtime.ipc import HEADER, ProtocolError, decode_payload, encode_frame, frame_length
from ollamactl.runtime.runner.config import STOP_GRACE_S, RunnerConfig

if TYPE_CHECKING:
    from ollamactl.runtime.builds.serving import CpuLibraries

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.runner_client")



class RunnerFailed(Exception):
    """The runner could not load its model, or answered a sequence with an error."""


class RunnerDied(RunnerFailed):
    """The runner process ended while it was loading or serving."""


class RunnerRefused(RunnerFailed):
    """The runner refused a sequence for what the request asked (Ollama answers 400)."""


@dataclass(frozen=True)
class Token:
    """The text of one sampled token (may be "": held back, or part of a character), and,
    when the sequence asked for logprobs, those of the text that goes out with it (Ollama's
    api.Logprob: a stop sequence's tokens have none, text held back has them later)."""

    text: str
    logprobs: Sequence[dict[str, Any]] = ()


@dataclass(frozen=True)
class Finished:
    """The last event of a sequence: why it stopped, counts and durations (ns)."""

    reason: str
    prompt_eval_count: int
    prompt_eval_ns: int
    eval_count: int
    eval_ns: int
    context: list[int] | None


@dataclass(frozen=True)
class ReadyInfo:
    """What a runner says once its model is loaded."""

    n_ctx: int
    n_ctx_train: int
    load_ns: int
    gpu_layers: int = 0      # layers on the GPU, the output layer counted (n_gpu_layers)
    layers: int = 0          # the model's layers, the output layer counted
    gpu_error: str = ""      # why a GPU placement ended on the CPU ("" when it did not)


def describe_exit(returncode: int | None) -> str:
    from ollamactl.runtime.builds.selftest import signal_name

    if returncode is None:
        return "closed its pipe"
    if name := signal_name(returncode):
        return {"SIGKILL": "signal: killed", "SIGSEGV": "signal: segmentation fault",
                "SIGTERM": "signal: terminated", "SIGABRT": "signal: aborted",
                "SIGILL": "signal: illegal instruction", "SIGBUS": "signal: bus error",
                }.get(name, name)
    return f"exit status {returncode}"


def _failure(event: Mapping[str, Any]) -> RunnerFailed:
    """The exception for an ``err`` frame: RunnerRefused when the request was at fault."""
    if event.get("status") == 400:
        return RunnerRefused(str(event["msg"]))
    return RunnerFailed(str(event["msg"]))


class AdoptedProcess:
    """A runner started with :mod:`subprocess` before the event loop ran (the spare, at the
    server's first instant), with the surface of ``asyncio.subprocess.Process`` that
    :class:`RunnerProcess` uses: its pipes as streams, ``wait`` in a worker thread."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader) -> None:
        self.popen = popen
        self.stdin: asyncio.StreamWriter | None = stdin
        self.stdout: asyncio.StreamReader | None = stdout

    @classmethod
    async def adopt(cls, popen: subprocess.Popen[bytes]) -> AdoptedProcess:
        assert popen.stdin is not None and popen.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                     popen.stdout)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), popen.stdin)
        return cls(popen, asyncio.StreamWriter(transport, protocol, None, loop), reader)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        return await asyncio.to_thread(self.popen.wait)

    def terminate(self) -> None:
        self.popen.terminate()

    def kill(self) -> None:
        self.popen.kill()


Process = asyncio.subprocess.Process | AdoptedProcess


class SpareRunner:
    """The spare runner (:func:`spare.start_spare`) once the event loop runs: the server's first
    load takes it and sends its config (with the CPU library chosen then) instead of starting
    an interpreter, ~0.1-0.2 s earlier. Used once; a later load starts its own runner, so an
    idle server keeps no spare process."""

    def __init__(self, proc: AdoptedProcess, env: Mapping[str, str]) -> None:
        self.proc: AdoptedProcess | None = proc
        self.env = dict(env)
        self.unused: asyncio.Task[None] | None = None

    @classmethod
    async def adopt(cls, popen: subprocess.Popen[bytes]) -> SpareRunner:
        return cls(await AdoptedProcess.adopt(popen), os.environ)

    def take(self, env: Mapping[str, str]) -> AdoptedProcess | None:
        """The spare, if it lives and was started with ``env`` (the runners' environment but
        the CPU library, which its config frame carries)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None and self.env == dict(env):
            return proc
        if proc is not None:                  # it died, or the environment changed since
            self.unused = asyncio.ensure_future(_end(proc))
        return None

    async def close(self) -> None:
        """Stop an unused spare (the server stops): closing its stdin ends it."""
        proc, self.proc = self.proc, None
        if proc is not None:
            await _end(proc)
        if self.unused is not None:
            await self.unused


async def _end(proc: Process) -> None:
    """End a runner process: close its stdin (a runner ends on EOF), then SIGTERM, then
    SIGKILL, each after a grace; reap it."""
    if proc.returncode is None:
        if proc.stdin is not None:
            proc.stdin.close()
        for action in (None, proc.terminate, proc.kill):
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S / 2 if action else 1.0)
                break
            except TimeoutError:
                continue


class RunnerProcess:
    """A runner subprocess and the sequences in flight on it."""

    _ids = itertools.count(1)

    def __init__(self, config: RunnerConfig, *, env: Mapping[str, str] | None = None,
                 libraries: CpuLibraries | None = None,
                 spare: SpareRunner | None = None) -> None:
        self.config = config
        self.env = dict(env) if env is not None else None
        self.libraries = libraries
        self.spare = spare
        self.library: Choice | None = None
        self.proc: Process | None = None
        self.ready: asyncio.Future[ReadyInfo] | None = None
        self.sequences: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.death: str | None = None
        self.stopped = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def is_alive(self) -> bool:
        return self.proc is not None and self.death is None and self.proc.returncode is None

    async def start(self, timeout_s: float) -> ReadyInfo:
        """Spawn the runner and wait until its model is loaded.

        Raises:
            RunnerFailed: the model did not load (the runner's own message), or took longer
                than ``timeout_s``.
        """
        # the CPU builds (and their self-test's modules) are imported at the first load
        from ollamactl.runtime.builds.serving import server_libraries

        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        libraries = self.libraries = self.libraries or server_libraries()
        try:
            self.library = libraries.choose()
        except VariantError as exc:
            raise RunnerFailed(str(exc)) from None
        base = dict(self.env if self.env is not None else os.environ)
        chosen = libraries.runner_env(self.library)
        env = {**base, **chosen}
        spare = self.spare.take(base) if self.spare is not None else None
        if spare is not None and spare.stdin is not None:
            self.proc = spare
            spare.stdin.write(encode_frame({"t": "config", "config": self.config.to_json(),
                                            "env": chosen}))
        else:
            self.proc = await asyncio.create_subprocess_exec(
                *self.config.to_argv(), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env, limit=2**20)
        log.info("runner started pid=%s model=%s num_ctx=%s parallel=%s%s", self.proc.pid,
                 self.config.model_path, self.config.num_ctx, self.config.num_parallel,
                 " (the spare)" if spare is not None else "")
        log.info("load_backend: runner pid=%s uses %s", self.proc.pid, self.library.describe())
        self.reader = asyncio.create_task(self._read_frames())
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), timeout_s)
        except TimeoutError:
            await self.stop()
            raise RunnerFailed(f"timed out after {timeout_s:g}s waiting for the model to "
                               "load (OLLAMA_LOAD_TIMEOUT)") from None
        except BaseException:  # RunnerFailed, or the waiting request was cancelled: no orphan
            await self.stop()
            raise

    async def _read_frames(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stream = self.proc.stdout
        try:
            while True:
                header = await stream.readexactly(HEADER.size)
                message = decode_payload(await stream.readexactly(frame_length(header)))
                kind = message.get("t")
                if kind == "ready" and self.ready and not self.ready.done():
                    self.ready.set_result(ReadyInfo(
                        int(message["n_ctx"]), int(message["n_ctx_train"]),
                        int(message["load_ns"]), int(message.get("gpu_layers", 0)),
                        int(message.get("layers", 0)), str(message.get("gpu_error", ""))))
                elif kind == "fatal" and self.ready and not self.ready.done():
                    self.ready.set_exception(RunnerFailed(str(message["msg"])))
                elif kind == "toks":    # one decode step: a token's text per sequence
                    for seq_id, text, *logprobs in message["items"]:
                        if (seq := self.sequences.get(seq_id)) is not None:
                            seq.put_nowait({"t": "tok", "token": Token(text, *logprobs)})
                elif (seq := self.sequences.get(int(message.get("id", 0)))) is not None:
                    seq.put_nowait(message)
        except (asyncio.IncompleteReadError, ProtocolError, ConnectionError) as exc:
            log.debug("runner pid=%s stream ended: %s", self.pid, exc)
        returncode = await self.proc.wait()
        self.death = f"llama runner process has terminated: {describe_exit(returncode)}"
        from ollamactl.runtime.builds.selftest import signal_name

        name = signal_name(returncode)
        meaning = self.libraries.explain_death(self.library, name) \
            if name and self.libraries is not None else ""
        if meaning:
            self.death += f" ({meaning})"
        if returncode != 0:
            log.warning("runner pid=%s %s", self.pid, self.death)
        if self.ready and not self.ready.done():
            self.ready.set_exception(RunnerDied(self.death))
        for seq in self.sequences.values():
            seq.put_nowait({"t": "died"})

    async def generate(self, segments: Sequence[tuple[str, bool]], options: Mapping[str, Any],
                       *, context: Sequence[int] | None = None,
                       want_context: bool = False, grammar: Mapping[str, Any] | None = None,
                       shift: bool = True, truncate: bool = True, logprobs: bool = False,
                       top_logprobs: int = 0, images: Sequence[str] | None = None
                       ) -> AsyncGenerator[Token | Finished, None]:
        """Stream one sequence: a :class:`Token` per sampled token, then a :class:`Finished`.
        ``shift``: a full context shifts rather than ends the sequence; ``truncate``: a prompt
        longer than the context is cut rather than refused; ``logprobs``: each token carries
        its logprob and ``top_logprobs`` alternatives; ``images`` (base64) are what the
        prompt's ``[img-N]`` tags name.

        Closing the iterator early cancels the sequence in the runner.

        Raises:
            RunnerDied: the runner ended mid-sequence.
            RunnerRefused: the request cannot be served as asked (prompt too long).
            RunnerFailed: the runner failed the sequence.
        """
        if not self.is_alive:
            raise RunnerDied(self.death or "runner is not running")
        seq_id = next(self._ids)
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sequences[seq_id] = events
        finished = False
        try:
            await self._send({"t": "gen", "id": seq_id, "segments": [list(s) for s in segments],
                              "context": list(context) if context else None,
                              "options": dict(options), "want_context": want_context,
                              "grammar": dict(grammar) if grammar else None,
                              "shift": shift, "truncate": truncate, "logprobs": logprobs,
                              "top_logprobs": top_logprobs,
                              **({"images": list(images)} if images else {})})
            while True:
                event = await events.get()
                kind = event["t"]
                if kind == "tok":
                    yield event["token"]
                elif kind == "done":
                    finished = True
                    yield Finished(str(event["reason"]), int(event["prompt_n"]),
                                   int(event["prompt_ns"]), int(event["eval_n"]),
                                   int(event["eval_ns"]), event.get("context"))
                    return
                elif kind == "err":
                    finished = True
                    raise _failure(event)
                else:
                    finished = True
                    raise RunnerDied(self.death or "llama runner process has terminated")
        finally:
            self.sequences.pop(seq_id, None)
            if not finished:
                self._send_nowait({"t": "cancel", "id": seq_id})

    async def embed(self, inputs: Sequence[str], *, truncate: bool) -> dict[str, Any]:
        """Embed ``inputs`` on an embedding runner: ``{"vectors": [...], "prompt_n": n}``.

        Raises:
            RunnerDied: the runner ended meanwhile.
            RunnerFailed: the runner refused the inputs (too long without truncate, ...).
        """
        if not self.is_alive:
            raise RunnerDied(self.death or "runner is not running")
        seq_id = next(self._ids)
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sequences[seq_id] = events
        try:
            await self._send({"t": "embed", "id": seq_id, "inputs": list(inputs),
                              "truncate": truncate})
            event = await events.get()
        finally:
            self.sequences.pop(seq_id, None)
        if event["t"] == "emb":
            return event
        if event["t"] == "err":
            raise _failure(event)
        raise RunnerDied(self.death or "llama runner process has terminated")

    async def _send(self, message: dict[str, Any]) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise RunnerDied("runner is not running")
        try:
            self.proc.stdin.write(encode_frame(message))
            await self.proc.stdin.drain()
        except ConnectionError as exc:
            raise RunnerDied(self.death or f"llama runner process has terminated: {exc}") from exc

    def _send_nowait(self, message: dict[str, Any]) -> None:
        """Queue a frame without awaiting: usable while the caller is being cancelled."""
        if self.is_alive and self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.proc.stdin.write(encode_frame(message))

    async def stop(self) -> None:
        """End the runner: close its stdin, then SIGTERM, then SIGKILL; reap it."""
        proc = self.proc
        if proc is None or self.stopped:
            return
        self.stopped = True
        await _end(proc)
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        log.info("runner stopped pid=%s", proc.pid)
