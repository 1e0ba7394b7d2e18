"""Memory the scheduler plans with: a model's predicted footprint and what the machine has free.

The prediction comes from the GGUF header alone (weights + KV cache for num_ctx x parallel +
a compute-buffer allowance), so the server can decide before it spawns a runner. Free memory is
psutil's ``available`` RAM (VRAM is the placement's: :mod:`gpus`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ollamactl.humanize import MIB
from ollamactl.runtime.store.gguf import GGUFInfo

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


def probe_memory() -> MemoryState:
    import psutil

    return MemoryState(int(psutil.virtual_memory().available))
