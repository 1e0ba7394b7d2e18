"""Where a model's layers go at each load: the installed GPU runtime, the devices it gives on
this machine, their free memory, and the placement (:mod:`placement`) the runner is told.

Discovery runs once per server, at the first load, in a child process (``python -I -m
ollamactl.runtime.builds.loader devices``) with the runners' environment, so
``CUDA_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES``/``ROCR_VISIBLE_DEVICES`` and
``GGML_VK_VISIBLE_DEVICES`` select exactly the devices the runners will see, and a driver that
crashes or hangs while it initialises takes down a throwaway process. A device's free memory is
what it reported then, less what this server's runners hold on it (Ollama does the same where
the library has no live query). ``OLLAMA_LLM_LIBRARY`` names a GPU runtime (``vulkan``) to use
only that one, or a CPU library (``cpu_avx2``) to keep every model on the CPU.

A GPU runtime that fails to start (its library or driver will not load, discovery crashes or
hangs) is a problem: said once in the log and kept (:attr:`Gpus.problem`), /api/ps shows it
with each model loaded on the CPU and doctor reads it there. A runtime that starts and finds no
device is no problem: a machine without a GPU (or a Vulkan runtime built for the tests' lavapipe
where no device is named) just runs on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ollamactl.humanize import GIB
from ollamactl.runtime.runner.config import RunnerConfig
from ollamactl.runtime.scheduling import placement
from ollamactl.runtime.store.options import DEFAULT_NUM_CTX

if TYPE_CHECKING:
    from ollamactl.runtime.builds.gpu_backends import GpuRuntime
    from ollamactl.runtime.store.gguf import GGUFInfo

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.gpus")

DISCOVERY_TIMEOUT_S = 60.0
# The device nodes each GPU runtime's driver makes (below /dev); WSL2 gives CUDA and Vulkan
# (Mesa's dozen) through /dev/dxg instead
DEVICE_NODES = {"cuda": ("nvidia[0-9]*", "dxg"), "hip": ("kfd",),
                "vulkan": ("dri/renderD*", "dxg")}

# Ollama's default num_ctx tiers by the GPUs' VRAM, less OLLAMA_GPU_OVERHEAD (server/routes.go)
CONTEXT_TIERS = ((47 * GIB, 262144), (23 * GIB, 32768))


def context_tier(usable_vram: int) -> int:
    """The default num_ctx for this much VRAM: 262144 from 47 GiB, 32768 from 23 GiB, else
    4096 (so 4096 without a GPU)."""
    return next((ctx for floor, ctx in CONTEXT_TIERS if usable_vram >= floor), DEFAULT_NUM_CTX)


@dataclass(frozen=True)
class GpuBackend:
    """One GPU runtime and the devices it found here."""

    library: str                            # "cuda" | "hip" | "vulkan"
    path: str                               # its backend library
    devices: tuple[placement.Device, ...]   # as discovered (free memory at discovery)


@dataclass(frozen=True)
class LoadPlan:
    """A placement and the runner config that carries it out."""

    config: RunnerConfig
    placement: placement.Placement


Discover = Callable[[str, Mapping[str, str]], dict[str, object]]


def discover_devices(library: str, environ: Mapping[str, str]) -> dict[str, object]:
    """The devices one GPU library gives, asked in a child process (see the module doc)."""
    argv = [sys.executable, "-I", "-m", "ollamactl.runtime.builds.loader", "devices", library]
    try:
        done = subprocess.run(argv, env=dict(environ), capture_output=True, text=True,
                              timeout=DISCOVERY_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"devices": [], "errors": [f"device discovery hung for {DISCOVERY_TIMEOUT_S:g}s "
                                          "(a wedged driver?)"]}
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return {"devices": [], "errors": [f"device discovery failed: {tail[0]}"]}
    return answer if isinstance(answer, dict) else {"devices": [], "errors": ["bad answer"]}


class Gpus:
    """The server's GPUs: discovered once, lazily; every method runs on the event loop."""

    def __init__(self, runtimes: Sequence[GpuRuntime] | None = None, *, requested: str = "",
                 environ: Mapping[str, str] | None = None,
                 discover: Discover = discover_devices, dev: Path = Path("/dev")) -> None:
        """``runtimes``: None for those installed beside this server's llama_cpp, read at the
        first load (never before the server listens). ``dev``: where device nodes are."""
        self.runtimes = None if runtimes is None else list(runtimes)
        self.requested = requested.strip().lower()
        self.environ = dict(os.environ if environ is None else environ)
        self.discover = discover
        self.dev = dev
        self.problem = ""
        self._backend: GpuBackend | None = None
        self._discovered = False
        self._lock = threading.Lock()   # discovery runs in a worker thread, once

    @property
    def discovered(self) -> bool:
        """Whether :meth:`backend` has its answer (it returns at once from then on)."""
        return self._discovered

    def backend(self) -> GpuBackend | None:
        """The first runtime (CUDA, then ROCm, then Vulkan) that finds a device here. The first
        call discovers (a child process: call it off the event loop); later calls wait for it."""
        with self._lock:
            if not self._discovered:
                self._backend = self._find()
                self._discovered = True
                if self._backend is not None:
                    log.info("GPU runtime %s: %s", self._backend.library, ", ".join(
                        f"{d.id} {d.name} ({d.free_bytes // 2**20} MiB free)"
                        for d in self._backend.devices))
                elif self.problem:
                    log.warning("no GPU: %s; models load on the CPU", self.problem)
            return self._backend

    def _find(self) -> GpuBackend | None:
        if self.runtimes is None and not any(map(self.may_have_devices, DEVICE_NODES)):
            # nothing to discover: the installed runtimes are not even listed
            log.info("no GPU device node here; models load on the CPU")
            return None
        if self.runtimes is None:
            from ollamactl.runtime.builds.gpu_backends import installed_gpu_runtimes

            self.runtimes = installed_gpu_runtimes()
        candidates = self.runtimes
        if self.requested:
            candidates = [r for r in self.runtimes if r.backend == self.requested]
            if not candidates:
                if self.runtimes:
                    self.problem = (f"OLLAMA_LLM_LIBRARY={self.requested} keeps the models on "
                                    "the CPU")
                return None
        if not candidates:
            return None
        reasons = []
        for runtime in candidates:
            if not self.may_have_devices(runtime.backend):
                log.info("GPU runtime %s: no device node here (%s)", runtime.backend,
                         ", ".join(DEVICE_NODES[runtime.backend]))
                continue
            answer = self.discover(str(runtime.library), self.environ)
            found = [_device(runtime.backend, item) for item in _items(answer.get("devices"))]
            if found:
                return GpuBackend(runtime.backend, str(runtime.library), tuple(found))
            if errors := [str(e) for e in _items(answer.get("errors"))]:
                reasons.append(f"{runtime.backend}: {'; '.join(errors)}")
            else:
                log.info("GPU runtime %s: no device here%s", runtime.backend,
                         _visibility_note(self.environ))
        if reasons:
            self.problem = "the GPU runtime failed to start (" + "; ".join(reasons) + ")"
        return None

    def may_have_devices(self, backend: str) -> bool:
        """Whether discovery could find anything: the driver's device nodes exist, or (Vulkan)
        GGML_VK_VISIBLE_DEVICES names a device, such as a CPU-type one like lavapipe. Saves the
        discovery's child process (~0.2 s on the first load) on a machine without a GPU."""
        if backend == "vulkan" and self.environ.get("GGML_VK_VISIBLE_DEVICES", "").strip():
            return True
        return any(any(self.dev.glob(pattern)) for pattern in DEVICE_NODES.get(backend, ("*",)))

    def usable_vram(self, overhead: int) -> int:
        """Total VRAM of the devices the runners will use, less the overhead kept on each."""
        backend = self.backend()
        return sum(max(0, d.total_bytes - overhead) for d in backend.devices) if backend else 0

    def plan(self, info: GGUFInfo | None, config: RunnerConfig, *, estimate_bytes: int,
             held: Mapping[str, int], overhead: int = 0, spread: bool = False) -> LoadPlan:
        """Where ``config``'s model goes now, given the VRAM this server's runners ``held``
        (bytes by device id)."""
        backend = self.backend()
        if backend is None or info is None or config.num_gpu == 0:
            return cpu_plan(config, estimate_bytes)
        devices = [replace(d, free_bytes=max(0, d.free_bytes - held.get(d.id, 0)))
                   for d in backend.devices]
        where = placement.place(info, devices, num_ctx=config.num_ctx,
                                num_parallel=config.num_parallel, num_batch=config.num_batch,
                                num_gpu=config.num_gpu, gpu_overhead=overhead, spread=spread,
                                projector_bytes=os.path.getsize(config.projector)
                                if config.projector else 0)   # Ollama counts its weights
        if where.on_cpu:
            return LoadPlan(config, where)
        return LoadPlan(replace(config, gpu_library=backend.path, gpu_devices=where.devices,
                                gpu_layers=where.layers, tensor_split=where.tensor_split), where)


def cpu_plan(config: RunnerConfig, estimate_bytes: int) -> LoadPlan:
    """Every layer on the CPU."""
    where = placement.Placement(layers=0, total_layers=0, layers_per_device=(), devices=(),
                                vram_bytes=0, vram_per_device=(), total_bytes=estimate_bytes,
                                graph_bytes=0, kv_bytes=0, tensor_split=())
    return LoadPlan(replace(config, gpu_library="", gpu_devices=(), gpu_layers=0,
                            tensor_split=()), where)


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _device(library: str, item: object) -> placement.Device:
    data = item if isinstance(item, dict) else {}
    return placement.Device(id=str(data.get("id", "")), library=library,
                            free_bytes=int(data.get("free", 0)),
                            total_bytes=int(data.get("total", 0)),
                            minimum_bytes=placement.minimum_memory(library),
                            name=str(data.get("description", "")))


def _visibility_note(environ: Mapping[str, str]) -> str:
    """The visibility variables set, which may be why nothing was found."""
    names = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
             "GGML_VK_VISIBLE_DEVICES")
    set_ = [f"{name}={environ[name]}" for name in names if name in environ]
    return f" with {', '.join(set_)}" if set_ else ""
