"""Loaded runners and who may use them: keep_alive timers, queue limit, capacity and eviction.

Follows Ollama's server/sched.go where it matters to users:

- one runner per model file; a request whose runner-level options (num_ctx, num_batch,
  num_gpu, num_thread, use_mmap) differ from the loaded runner's reloads it;
- OLLAMA_NUM_PARALLEL slots per runner (its context holds num_ctx x parallel); requests beyond
  that wait for a slot, and every request that waits (for a load or for a slot) counts against
  OLLAMA_MAX_QUEUE: one more is refused at once with Ollama's 503 text. Up to NUM_PARALLEL of
  the waiting requests already wait inside the runner (``RUNNER_QUEUE_FACTOR``), so the runner
  refills a slot in the same step that frees it instead of idling for a round trip;
- OLLAMA_MAX_LOADED_MODELS and predicted memory (GGUF header) against free RAM/VRAM decide when
  to evict; the victim is the idle runner with the shortest keep_alive, then by path (not LRU);
  when none is idle the shortest is marked to unload after its requests and the load waits;
- each load is placed anew (:mod:`gpus`, :mod:`placement`): as many layers as fit in the free
  VRAM of the GPU runtime's devices; a model that would only partly fit while other runners hold
  VRAM evicts one and tries again; a GPU load that fails is retried once on the CPU, and why is
  logged and kept with the runner (/api/ps);
- a model whose prediction exceeds what the machine could free is refused; a load that runs
  out of memory anyway (the prediction was short) evicts every other runner and retries once;
- keep_alive: the timer starts when a runner's last request ends; 0 unloads then; forever never.

Loads, unloads (with their reason) and crashes are reported to a :class:`SchedulerEvents` as
they happen (the server's metrics); the scheduler itself keeps no counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamactl.humanize import bytes_iec
from ollamactl.runtime.runner.config import RunnerConfig
from ollamactl.runtime.scheduling import placement
from ollamactl.runtime.scheduling.gpus import Gpus, LoadPlan, context_tier, cpu_plan
from ollamactl.runtime.scheduling.memory import MemoryState, probe_memory
from ollamactl.runtime.scheduling.runner_client import (
    ReadyInfo,
    RunnerDied,
    RunnerFailed,
    RunnerProcess,
)
from ollamactl.runtime.store.options import DEFAULT_NUM_CTX

if TYPE_CHECKING:
    from ollamactl.runtime.store.gguf import GGUFInfo

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.scheduler")

QUEUE_FULL_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"

# A runner holds up to NUM_PARALLEL x this sequences: the ones beyond its slots wait in its own
# queue (they still count as pending against OLLAMA_MAX_QUEUE).
RUNNER_QUEUE_FACTOR = 2

# How a runner that ran out of memory while loading says so: llama.cpp's allocation failures,
# our engine's context error, and the kernel's OOM killer.
OUT_OF_MEMORY_SIGNS = ("out of memory", "failed to allocate", "cudamalloc", "signal: killed")


# Why a runner was unloaded: its keep_alive ran out (0 included), another model needed the room
# or its options changed, a request asked (keep_alive 0 without a prompt), the server stopped,
# or the runner died on its own.
UNLOAD_REASONS = ("keep_alive", "evicted", "requested", "shutdown", "crashed")


class SchedulerEvents:
    """What the scheduler reports as it happens; this base ignores it all. Every call runs on
    the server's event loop and must not block."""

    def runner_loaded(self, model: str) -> None:
        """A runner for ``model`` finished loading."""

    def runner_unloaded(self, model: str, reason: str) -> None:
        """A runner left the loaded set; ``reason`` is one of :data:`UNLOAD_REASONS`."""

    def runner_crashed(self, model: str, signal: str) -> None:
        """A runner died unasked (loading or serving): ``signal`` is its name (``SIGSEGV``),
        ``none`` for a plain exit."""


class QueueFull(Exception):
    """Too many requests are waiting (OLLAMA_MAX_QUEUE)."""

    def __init__(self) -> None:
        super().__init__(QUEUE_FULL_MESSAGE)


class ModelTooLarge(RunnerFailed):
    """The model's predicted memory exceeds what the machine has, even with nothing loaded."""


@dataclass(frozen=True)
class SchedulerConfig:
    max_loaded_models: int = 0       # 0: Ollama's default, 3 per GPU found (3 on the CPU)
    num_parallel: int = 1
    max_queue: int = 512
    load_timeout_s: float = 300.0
    default_keep_alive_s: float = 300.0
    gpu_overhead_bytes: int = 0      # OLLAMA_GPU_OVERHEAD: VRAM kept free on each GPU
    sched_spread: bool = False       # OLLAMA_SCHED_SPREAD: spread a model over every GPU


@dataclass(frozen=True)
class ModelRef:
    """What the scheduler must know of a stored model."""

    name: str
    digest: str
    model_path: Path
    estimate_bytes: int
    details: Mapping[str, Any] = field(default_factory=dict)
    info: GGUFInfo | None = None       # the GGUF header: per-layer sizes for the placement


@dataclass
class Loaded:
    """One runner and its bookkeeping."""

    ref: ModelRef
    config: RunnerConfig
    process: RunnerProcess
    ready: ReadyInfo
    keep_alive_s: float
    slots: asyncio.Semaphore
    placement: placement.Placement
    gpu_error: str = ""              # why a GPU placement ended on the CPU
    refcount: int = 0
    leased: int = 0                  # requests holding a lease: running or queued in the runner
    expires_at: float = 0.0          # wall clock, seconds; math.inf = forever
    unloading: bool = False
    unload_reason: str = ""          # set with ``unloading``: why (see UNLOAD_REASONS)
    timer: asyncio.TimerHandle | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def queued(self) -> int:
        """Leased requests that wait in the runner's own queue for a slot."""
        return max(0, self.leased - self.config.num_parallel)

    @property
    def size_bytes(self) -> int:
        """/api/ps's ``size``: the whole model, wherever it runs."""
        return self.placement.total_bytes

    @property
    def size_vram_bytes(self) -> int:
        """/api/ps's ``size_vram``: the part on GPUs (0 when the runner fell back)."""
        return self.placement.vram_bytes if self.ready.gpu_layers else 0

    def vram_by_device(self) -> dict[str, int]:
        if not self.ready.gpu_layers:
            return {}
        return dict(zip(self.placement.devices, self.placement.vram_per_device, strict=True))

    def touch(self) -> None:
        """Expiry as /api/ps reports it: now + keep_alive (the timer starts when idle)."""
        self.expires_at = time.time() + self.keep_alive_s if math.isfinite(
            self.keep_alive_s) else math.inf


@dataclass
class Lease:
    """A slot on a loaded runner, held for one request; give it back with ``release``."""

    loaded: Loaded
    load_ns: int


Spawn = Callable[[RunnerConfig], RunnerProcess]


class Scheduler:
    """Owns every runner of the server; all methods run on the server's event loop."""

    def __init__(self, config: SchedulerConfig, *,
                 memory: Callable[[], MemoryState] = probe_memory,
                 spawn: Spawn = RunnerProcess, events: SchedulerEvents | None = None,
                 gpus: Gpus | None = None) -> None:
        self.config = config
        self.memory = memory
        self.spawn = spawn
        self.events = events or SchedulerEvents()
        self.gpus = gpus
        self.loaded: dict[Path, Loaded] = {}
        self.waiting = 0                 # requests waiting for a load or for a lease
        self._load_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def default_num_ctx(self) -> int:
        """num_ctx for a request that, like its model and OLLAMA_CONTEXT_LENGTH, sets none: the
        tier of the GPUs' VRAM (Ollama 0.33), 4096 without a GPU."""
        if self.gpus is None:
            return DEFAULT_NUM_CTX
        await self._discover()
        return context_tier(self.gpus.usable_vram(self.config.gpu_overhead_bytes))

    def _max_loaded(self) -> int:
        """OLLAMA_MAX_LOADED_MODELS, or Ollama's default: 3 per GPU the runtime found (every
        vendor's, after the discovery), 3 without one."""
        if self.config.max_loaded_models > 0:
            return self.config.max_loaded_models
        backend = self.gpus.backend() if self.gpus is not None else None
        return 3 * max(1, len(backend.devices) if backend else 0)

    async def _discover(self) -> None:
        """The GPU discovery, once, in a worker thread (a child process runs it); every later
        call (each request asks for the default context) costs no thread hop."""
        if self.gpus is not None and not self.gpus.discovered:
            await asyncio.to_thread(self.gpus.backend)

    # -- acquiring and releasing --------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests that wait (OLLAMA_MAX_QUEUE): for a load, a lease, or in a runner's queue."""
        return self.waiting + sum(item.queued for item in self.loaded.values())

    async def acquire(self, ref: ModelRef, config: RunnerConfig,
                      keep_alive_s: float | None) -> Lease:
        """A slot on a runner for ``ref`` with ``config``, loading (and evicting) as needed.

        Raises:
            QueueFull: OLLAMA_MAX_QUEUE requests are already waiting.
            ModelTooLarge: the model can never fit in this machine's memory.
            RunnerFailed: the runner did not load.
        """
        if self.pending >= self.config.max_queue:
            raise QueueFull
        started = time.perf_counter_ns()
        self.waiting += 1
        try:
            loaded = await self._get_runner(ref, config, keep_alive_s)
            try:
                await loaded.slots.acquire()
            except BaseException:
                self._drop_ref(loaded)
                raise
            loaded.leased += 1
        finally:
            self.waiting -= 1
        return Lease(loaded, time.perf_counter_ns() - started)

    def release(self, lease: Lease) -> None:
        lease.loaded.leased -= 1
        lease.loaded.slots.release()
        self._drop_ref(lease.loaded)

    def _drop_ref(self, loaded: Loaded) -> None:
        loaded.refcount -= 1
        if loaded.refcount > 0:
            return
        loaded.touch()
        loaded.idle.set()
        if loaded.unloading or loaded.keep_alive_s <= 0 or not loaded.process.is_alive:
            reason = "crashed" if not loaded.process.is_alive else "keep_alive"
            self._spawn_task(self._unload(loaded, reason))
        elif math.isfinite(loaded.keep_alive_s):
            loop = asyncio.get_running_loop()
            loaded.timer = loop.call_later(loaded.keep_alive_s, self._on_expiry, loaded)

    def _on_expiry(self, loaded: Loaded) -> None:
        loaded.timer = None
        if loaded.refcount == 0:
            log.info("keep_alive expired model=%s", loaded.ref.name)
            self._spawn_task(self._unload(loaded, "keep_alive"))

    async def _get_runner(self, ref: ModelRef, config: RunnerConfig,
                          keep_alive_s: float | None) -> Loaded:
        async with self._load_lock:
            retried = False
            while True:
                current = self.loaded.get(ref.model_path)
                if current is not None and current.config == config and \
                        current.process.is_alive and not current.unloading:
                    self._take_ref(current, keep_alive_s)
                    return current
                if current is not None:
                    reason = "runner died" if not current.process.is_alive else "options changed"
                    log.info("reloading model=%s (%s)", ref.name, reason)
                    await self._evict(current, "crashed" if not current.process.is_alive
                                      else "evicted")
                    continue
                await self._discover()
                if len(self.loaded) >= self._max_loaded():
                    await self._evict(self._pick_victim())
                    continue
                plan = self._plan(ref, config)
                if self._short_of_vram(plan):
                    log.info("model=%s fits %d of %d layers on the GPU beside the loaded "
                             "models: evicting one", ref.name, plan.placement.layers,
                             plan.placement.total_layers)
                    await self._evict(self._pick_victim())
                    continue
                if not self._fits(ref, plan.placement):
                    await self._evict(self._pick_victim())
                    continue
                try:
                    loaded = await self._load(ref, plan, keep_alive_s)
                except RunnerFailed as exc:
                    if retried or not self.loaded or not _out_of_memory(exc):
                        raise
                    log.warning("loading model=%s ran out of memory (%s): evicting every "
                                "loaded model and retrying once", ref.name, exc)
                    for victim in list(self.loaded.values()):
                        await self._evict(victim)
                    retried = True
                    continue
                self._take_ref(loaded, keep_alive_s)
                return loaded

    def _take_ref(self, loaded: Loaded, keep_alive_s: float | None) -> None:
        if keep_alive_s is not None:
            loaded.keep_alive_s = keep_alive_s
        if loaded.timer is not None:
            loaded.timer.cancel()
            loaded.timer = None
        loaded.refcount += 1
        loaded.idle.clear()
        loaded.touch()

    def _plan(self, ref: ModelRef, config: RunnerConfig) -> LoadPlan:
        """Where ``ref`` goes now, beside the VRAM the loaded runners hold."""
        if self.gpus is None:
            return cpu_plan(config, ref.estimate_bytes)
        held: dict[str, int] = {}
        for item in self.loaded.values():
            for device, size in item.vram_by_device().items():
                held[device] = held.get(device, 0) + size
        return self.gpus.plan(ref.info, config, estimate_bytes=ref.estimate_bytes, held=held,
                              overhead=self.config.gpu_overhead_bytes,
                              spread=self.config.sched_spread)

    def _short_of_vram(self, plan: LoadPlan) -> bool:
        """A partial GPU fit while loaded runners hold VRAM that unloading would give back."""
        where = plan.placement
        return (where.layers < where.total_layers and bool(self.gpus and self.gpus.backend())
                and plan.config.num_gpu < 0
                and any(item.size_vram_bytes for item in self.loaded.values()))

    def _fits(self, ref: ModelRef, where: placement.Placement) -> bool:
        """Whether the model's part in RAM fits now; raises ModelTooLarge if it never could."""
        need = where.total_bytes - where.vram_bytes
        free = self.memory().free_ram_bytes
        could_free = sum(item.size_bytes - item.size_vram_bytes for item in self.loaded.values())
        if need > free + could_free:
            raise ModelTooLarge(
                f"model requires more system memory ({bytes_iec(need)}) than is "
                f"available ({bytes_iec(free + could_free)})")
        return not self.loaded or need <= free

    async def _load(self, ref: ModelRef, plan: LoadPlan, keep_alive_s: float | None) -> Loaded:
        """Start a runner as ``plan`` says; a GPU load that fails is tried once on the CPU."""
        gpu_error = ""
        try:
            process, ready = await self._start(ref, plan)
        except ModelTooLarge:
            raise
        except RunnerFailed as exc:
            if not plan.config.gpu_layers:
                raise
            gpu_error = f"loading on {', '.join(plan.config.gpu_devices)} failed: {exc}"
            log.warning("model=%s: %s; loading it on the CPU", ref.name, gpu_error)
            plan = cpu_plan(plan.config, ref.estimate_bytes)
            process, ready = await self._start(ref, plan)
        if ready.gpu_error:
            gpu_error = ready.gpu_error
            log.warning("model=%s: GPU runtime failed (%s); loaded on the CPU", ref.name,
                        gpu_error)
        elif not plan.config.gpu_layers and self.gpus is not None and self.gpus.problem:
            gpu_error = self.gpus.problem
        config = plan.config
        loaded = Loaded(ref=ref, config=config, process=process, ready=ready,
                        keep_alive_s=self.config.default_keep_alive_s if keep_alive_s is None
                        else keep_alive_s,
                        slots=asyncio.Semaphore(config.num_parallel * RUNNER_QUEUE_FACTOR),
                        placement=plan.placement, gpu_error=gpu_error)
        self.loaded[ref.model_path] = loaded
        if process.reader is not None:
            process.reader.add_done_callback(lambda _task: self._on_runner_exit(loaded))
        log.info("model loaded model=%s pid=%s in %.2fs layers=%d/%d on %s", ref.name,
                 process.pid, ready.load_ns / 1e9, ready.gpu_layers, ready.layers,
                 ", ".join(config.gpu_devices) if ready.gpu_layers else "CPU")
        self.events.runner_loaded(ref.name)
        return loaded

    async def _start(self, ref: ModelRef, plan: LoadPlan) -> tuple[RunnerProcess, ReadyInfo]:
        config = plan.config
        process = self.spawn(config)
        log.info("loading model=%s path=%s num_ctx=%d parallel=%d estimate=%s gpu_layers=%d%s",
                 ref.name, ref.model_path, config.num_ctx, config.num_parallel,
                 bytes_iec(plan.placement.total_bytes), config.gpu_layers,
                 f" on {','.join(config.gpu_devices)}" if config.gpu_layers else "")
        try:
            ready = await process.start(self.config.load_timeout_s)
        except RunnerDied:
            self.events.runner_crashed(ref.name, _exit_signal(process))
            raise
        return process, ready

    def _on_runner_exit(self, loaded: Loaded) -> None:
        if not loaded.unloading:
            log.warning("runner of model=%s exited: %s", loaded.ref.name, loaded.process.death)
            self.events.runner_crashed(loaded.ref.name, _exit_signal(loaded.process))
            if loaded.refcount == 0:
                self._spawn_task(self._unload(loaded, "crashed"))

    # -- eviction and unloading ---------------------------------------------------------------

    def _pick_victim(self) -> Loaded:
        """Idle runner with the shortest keep_alive (then path); else the shortest busy one."""
        ordered = sorted(self.loaded.values(), key=lambda item: (item.keep_alive_s,
                                                                 str(item.ref.model_path)))
        if not ordered:
            raise RunnerFailed("no loaded model can be evicted")
        for item in ordered:
            if item.refcount == 0:
                return item
        return ordered[0]

    async def _evict(self, victim: Loaded, reason: str = "evicted") -> None:
        """Unload ``victim`` now if idle, else once its current requests end."""
        log.info("evicting model=%s", victim.ref.name)
        victim.keep_alive_s = 0
        _mark_unloading(victim, reason)
        if victim.refcount > 0:
            await victim.idle.wait()
        await self._unload(victim, reason)

    async def _unload(self, loaded: Loaded, reason: str) -> None:
        """Stop ``loaded``'s runner; ``reason`` counts unless one was given when it was marked
        for unloading."""
        _mark_unloading(loaded, reason)
        if loaded.timer is not None:
            loaded.timer.cancel()
            loaded.timer = None
        if self.loaded.get(loaded.ref.model_path) is loaded:
            del self.loaded[loaded.ref.model_path]
            log.info("unloading model=%s pid=%s", loaded.ref.name, loaded.process.pid)
            self.events.runner_unloaded(loaded.ref.name, loaded.unload_reason)
        await loaded.process.stop()

    def expire(self, model_path: Path) -> bool:
        """``keep_alive: 0`` with no prompt: unload now, or after the current requests."""
        loaded = self.loaded.get(model_path)
        if loaded is None:
            return False
        loaded.keep_alive_s = 0
        _mark_unloading(loaded, "requested")
        if loaded.refcount == 0:
            self._spawn_task(self._unload(loaded, "requested"))
        return True

    def running(self) -> list[Loaded]:
        """Loaded runners for /api/ps, latest expiry first."""
        alive = [item for item in self.loaded.values() if not item.unloading]
        return sorted(alive, key=lambda item: item.expires_at, reverse=True)

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop every runner (server shutdown)."""
        for loaded in list(self.loaded.values()):
            await self._unload(loaded, "shutdown")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _mark_unloading(loaded: Loaded, reason: str) -> None:
    """Mark ``loaded`` to unload; the first reason given is the one reported."""
    loaded.unloading = True
    loaded.unload_reason = loaded.unload_reason or reason


def _exit_signal(process: RunnerProcess) -> str:
    """The signal that ended ``process`` (``SIGKILL``), ``none`` for a plain exit."""
    from ollamactl.runtime.builds.selftest import signal_name  # the builds load on first use

    proc = getattr(process, "proc", None)
    return signal_name(getattr(proc, "returncode", None)) or "none"


def _out_of_memory(exc: RunnerFailed) -> bool:
    message = str(exc).lower()
    return any(sign in message for sign in OUT_OF_MEMORY_SIGNS)

