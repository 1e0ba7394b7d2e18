"""Memory the scheduler plans with: a model's predicted footprint and what the machine has free.

The prediction comes from the GGUF header alone (weights + KV cache for num_ctx x parallel +
a compute-buffer allowance), so the server can decide before it spawns a runner. Free memory is
psutil's ``available`` RAM (VRAM is the placement's: :mod:`gpus`). NVML, asked through
:mod:`ollamactl.gpu.nvidia` (the one NVML door), counts the NVIDIA GPUs for the default
OLLAMA_MAX_LOADED_MODELS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ollamactl.gpu.nvidia import Nvml, NvmlUnavailable, read_free_vram
from ollamactl.humanize import MIB
from ollamactl.runtime.store.gguf import GGUFInfo

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.memory")

# The graph/compute buffers llama.cpp allocates on top of weights and KV: a floor plus the
# logits of one batch (n_vocab x n_batch floats).
COMPUTE_FLOOR_BYTES = 32 * MIB


@dataclass(frozen=True)
class MemoryState:
    """Free memory right now, in bytes."""

    free_ram_bytes: int


def estimate_model_bytes(info: GGUFInfo, *, num_ctx: int, num_parallel: int,
                         num_batch: int) -> int:
    """Bytes a runner will hold: weights, f16 KV cache for every slot, compute buffers."""
    weights = info.tensor_bytes or info.file_size
    kv = info.kv_cache_bytes(num_ctx * num_parallel)
    vocab = info.kv.get("tokenizer.ggml.tokens")
    n_vocab = getattr(vocab, "length", None) or (len(vocab) if isinstance(vocab, list) else 0)
    compute = COMPUTE_FLOOR_BYTES + int(n_vocab) * num_batch * 4
    return int(weights + kv + compute)


# The server's one NVML session: opened on the first probe through gpu.nvidia's door (bounded
# init: a driver wedged after a suspend can hang nvmlInit), kept for the process, shut at exit.
_NVML = Nvml()


def _nvidia_free_vram(nvml: Nvml | None = None) -> list[int]:
    """Free bytes per NVIDIA GPU NVML sees (``nvidia-smi --query-gpu=memory.free``); [] without
    a working NVML (no package, no driver, library/driver mismatch, a hung init) or when any
    device will not say."""
    try:
        free = read_free_vram(nvml or _NVML)
    except NvmlUnavailable as exc:
        log.debug("NVML unavailable: %s", exc)
        return []
    known = [value for value in free if isinstance(value, int)]
    if len(known) != len(free):
        log.debug("NVML did not give the free memory of every GPU")
        return []
    return known


def gpu_count(nvml: Nvml | None = None) -> int:
    """NVIDIA GPUs whose free memory NVML reports (0 without NVML)."""
    return len(_nvidia_free_vram(nvml))


def free_vram_bytes(nvml: Nvml | None = None) -> int:
    """Free VRAM summed over those GPUs, in bytes."""
    return sum(_nvidia_free_vram(nvml))


def probe_memory() -> MemoryState:
    import psutil

    return MemoryState(int(psutil.virtual_memory().available))
