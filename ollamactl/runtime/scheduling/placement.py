"""Where a model's layers go: Ollama's llama-engine placement arithmetic, from the GGUF header.

The scheduler must know before it spawns a runner how many layers (llama.cpp's
``n_gpu_layers``, the output layer counting as one) fit on which GPUs, and what the load will
cost in VRAM and in all. Ollama answers this with ``estimateGPULayers`` (llm/memory.go, v0.11 /
v0.12) and picks devices with ``pickBestFullFitByLibrary`` / ``pickBestPartialFitByLibrary``;
this module follows that arithmetic so /api/ps sizes and offload decisions match what Ollama
users see. Pure functions: devices and their free memory come from the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ollamactl.humanize import MIB
from ollamactl.runtime.store.gguf import TOKENS_KEY, GGUFInfo, SkippedArray

# Ollama's ml.DeviceInfo.MinimumMemory: VRAM a backend takes before any model allocation
# (contexts, cuBLAS/Vulkan workspaces). Metal reserves 512 MiB; every other library 457 MiB.
METAL_MINIMUM_BYTES = 512 * MIB
GPU_MINIMUM_BYTES = 457 * MIB

# Ollama's GraphSize for gemma3: every 6th layer's cache is global (full context), the rest
# hold a sliding window.
_GEMMA3_GLOBAL_EVERY = 6


def minimum_memory(library: str) -> int:
    """The per-device reserve Ollama sets aside for ``library`` ("cuda", "hip", "vulkan",
    "metal")."""
    return METAL_MINIMUM_BYTES if library == "metal" else GPU_MINIMUM_BYTES


@dataclass(frozen=True)
class Device:
    """One GPU as the scheduler sees it; sizes in bytes."""

    id: str  # llama.cpp's device name: "CUDA0", "Vulkan0"...
    library: str  # "cuda" | "hip" | "vulkan" | "metal"
    free_bytes: int
    total_bytes: int
    minimum_bytes: int  # see minimum_memory()
    name: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where the layers go and what that costs; sizes in bytes.

    ``layers`` counts the output layer as one, as llama.cpp's ``n_gpu_layers`` does, out of
    ``total_layers`` (block_count + 1). ``vram_bytes`` is Ollama's VRAMSize (the GPU part);
    ``total_bytes`` its TotalSize, what /api/ps reports as ``size``.
    """

    layers: int
    total_layers: int
    layers_per_device: tuple[int, ...]  # aligned with devices
    devices: tuple[str, ...]
    vram_bytes: int
    vram_per_device: tuple[int, ...]  # aligned with devices
    total_bytes: int
    graph_bytes: int  # compute graph per device: full- or partial-offload size
    kv_bytes: int  # the whole KV cache, num_ctx x num_parallel tokens
    tensor_split: tuple[int, ...]  # llama.cpp's tensor_split, () on one device

    @property
    def full(self) -> bool:
        """Every layer, output included, is on a GPU."""
        return self.layers >= self.total_layers

    @property
    def on_cpu(self) -> bool:
        """No layer is on a GPU."""
        return self.layers == 0


def _uint(info: GGUFInfo, suffix: str) -> int | None:
    value = info.arch_value(suffix)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _per_layer(info: GGUFInfo, suffix: str, blocks: int) -> list[int]:
    """Ollama's HeadCount()/HeadCountKV(): a value per block from a scalar or an array; a
    missing key reads as 1, a short array is padded with 1 (or its only value)."""
    value = info.arch_value(suffix)
    if isinstance(value, int) and not isinstance(value, bool):
        values = [value]
    elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        values = list(value)
    else:
        values = [1]
    pad = values[0] if len(values) == 1 else 1
    return [values[i] if i < len(values) else pad for i in range(blocks)]


def _scalar_or_range(info: GGUFInfo, suffix: str) -> tuple[int, int]:
    """(min, max) of a scalar-or-array key, 1 when absent (Ollama's UintOrArrayValue)."""
    value = info.arch_value(suffix)
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return min(value), max(value)
    return 1, 1


def _vocab_size(kv: dict[str, Any]) -> int:
    tokens = kv.get(TOKENS_KEY)
    if isinstance(tokens, SkippedArray):
        return tokens.length
    return len(tokens) if isinstance(tokens, list) else 0


def _layer_sizes(info: GGUFInfo) -> dict[str, int]:
    """Bytes per layer group, Ollama's Tensors().GroupLayers(): ``blk.N`` (and ``mm.N``) tensors
    group by their index, everything else by the first name part (``output``, ``token_embd``)."""
    sizes: dict[str, int] = {}
    for tensor in info.tensors:
        parts = tensor.name.split(".")
        index = next((i for i, part in enumerate(parts) if part in ("blk", "mm")), -1)
        group = ".".join(parts[:index + 2]) if index != -1 and len(parts) > index + 2 else parts[0]
        sizes[group] = sizes.get(group, 0) + tensor.size_bytes
    return sizes


@dataclass(frozen=True)
class _Graph:
    kv: list[int]  # f16 KV cache per block
    partial: int  # compute graph when some layers stay on the CPU
    full: int  # compute graph when everything is offloaded


def _graph_size(info: GGUFInfo, num_ctx: int, batch: int, num_parallel: int) -> _Graph:
    """Ollama's GGML.GraphSize for an f16 cache: KV per block and the partial/full graph
    sizes for the architectures it names (0 means: use the generic fallback)."""
    context = num_ctx * num_parallel  # every slot has its own num_ctx of cache
    blocks = info.block_count or 0
    embedding = info.embedding_length or 0
    heads_min, heads = _scalar_or_range(info, "attention.head_count")
    heads_kv = _scalar_or_range(info, "attention.head_count_kv")[1]
    heads_per_layer = _per_layer(info, "attention.head_count", blocks)
    heads_kv_per_layer = _per_layer(info, "attention.head_count_kv", blocks)
    vocab = _vocab_size(info.kv)
    head_dim = embedding // heads_min if heads_min > 0 else 0
    head_k = _uint(info, "attention.key_length") or head_dim
    head_v = _uint(info, "attention.value_length") or head_dim

    kv: list[int] = []
    for layer_heads, layer_heads_kv in zip(heads_per_layer, heads_kv_per_layer, strict=True):
        if layer_heads > 0 and layer_heads_kv > 0:
            kv.append(context * (head_k + head_v) * layer_heads_kv * 2)
        else:
            # a recurrent (SSM) block: fixed f32 state instead of a per-token cache
            conv = _uint(info, "ssm.conv_kernel") or 0
            inner = _uint(info, "ssm.inner_size") or 0
            state = _uint(info, "ssm.state_size") or 0
            groups = _uint(info, "ssm.group_count") or 0
            conv_state = (conv - 1) * (inner + 2 * groups * state) if conv > 0 else 0
            kv.append((conv_state + state * inner) * 4)

    full = partial = 0
    arch = info.architecture
    if arch in ("llama", "llama4"):
        full = max(4 * batch * (1 + 4 * embedding + context * (1 + heads)),
                   4 * batch * (embedding + vocab))
        partial = 4 * batch * embedding + max(
            4 * batch * (1 + embedding + max(context, embedding)) + embedding * embedding * 9 // 16
            + 4 * context * (batch * heads + head_dim * heads_kv),
            4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128)
    elif arch in ("gemma", "gemma2", "gemma3"):
        full = max(4 * batch * (embedding + vocab),
                   4 * batch * (2 + context + context * heads + 2 * embedding
                                + 2 * head_k * heads))
        partial = max(
            4 * embedding * batch + embedding * vocab * 105 // 128 + 4 * vocab * batch,
            4 * batch * (2 * embedding + 1 + 2 * head_k * heads + context + context * heads)
            + 4 * head_k * context * 8 + embedding * head_k * heads * 9 // 16)
        if arch == "gemma3":
            window = num_parallel * (_uint(info, "attention.sliding_window") or 0) + batch
            kv = [size if (i + 1) % _GEMMA3_GLOBAL_EVERY == 0
                  else window * (head_k + head_v) * heads_kv * 2
                  for i, size in enumerate(kv)]
    elif arch == "qwen2":
        full = max(4 * batch * (embedding + vocab),
                   4 * batch * (1 + 2 * embedding + context + context * heads))
        partial = max(4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128,
                      4 * (batch * (1 + 2 * embedding + context * (1 + heads))
                           + embedding * (1 + context)))
    if partial == 0:
        # Ollama's fallback for architectures it has no formula for (qwen3 among them):
        # a sixth of the cache, scaled by the grouped-query ratio.
        kv_heads_min = _scalar_or_range(info, "attention.head_count_kv")[0] or 1
        partial = heads // kv_heads_min * sum(kv) // 6
    return _Graph(kv=kv, partial=partial, full=full or partial)


def estimate(info: GGUFInfo, devices: Sequence[Device], *, num_ctx: int, num_parallel: int,
             num_batch: int, num_gpu: int = -1, gpu_overhead: int = 0,
             projector_bytes: int = 0) -> Placement:
    """How many layers of ``info`` fit on ``devices`` (all of one library), Ollama's
    estimateGPULayers: blocks from the last one down, round-robin over the devices that still
    have room, then the output layer; ``num_gpu`` >= 0 caps the layers; ``gpu_overhead``
    (OLLAMA_GPU_OVERHEAD) is kept free on every device, ``projector_bytes`` go on the first.
    No device, ``num_gpu=0`` or no layer that fits gives the CPU placement."""
    if len({device.library for device in devices}) > 1:
        raise ValueError("estimate() takes the devices of one library; place() groups them")
    blocks = info.block_count or 0
    graph = _graph_size(info, num_ctx, min(num_ctx, num_batch), num_parallel)
    kv_total = sum(graph.kv)
    partial, full = graph.partial, graph.full
    if devices and devices[0].library == "metal":
        partial = full  # Metal has no partial-offload overhead
    elif len(devices) > 1:
        full = partial  # several GPUs always run the partial graph
    graph_max = max(partial, full)

    groups = _layer_sizes(info)
    layer_size = groups.get("blk.0", 0) + (graph.kv[0] if graph.kv else 0)
    output_size = groups.get("output_norm", 0) + groups.get("output", groups.get("token_embd", 0))

    # Room for the graph, the library's reserve, a one-layer buffer and at least one layer;
    # the projector goes on the first device that has room.
    allocations = [0] * len(devices)
    counts = [0] * len(devices)
    with_space: list[int] = []
    for index, device in enumerate(devices):
        zero_overhead = projector_bytes if not with_space else 0
        needed = gpu_overhead + zero_overhead + graph_max + device.minimum_bytes + 2 * layer_size
        if device.free_bytes < needed:
            continue
        with_space.append(index)
        allocations[index] += device.minimum_bytes + layer_size
    overflow = 0
    if with_space:
        allocations[with_space[0]] += projector_bytes
    else:
        overflow += projector_bytes

    def fits(index: int, size: int) -> bool:
        return devices[index].free_bytes > gpu_overhead + allocations[index] + graph_max + size

    def assign(turn: int, size: int, *, drop_full: bool) -> bool:
        """Ollama's round robin: the device at ``turn % j`` of those left takes ``size`` if it
        fits; with ``drop_full`` one that cannot take a layer leaves the rotation."""
        for j in range(len(with_space), 0, -1):
            index = with_space[turn % j]
            if fits(index, size):
                allocations[index] += size
                counts[index] += 1
                return True
            if drop_full:
                del with_space[turn % j]
        return False

    placed = 0
    for block in reversed(range(blocks)):  # llama.cpp offloads the last layers first
        if f"blk.{block}" in groups:  # layer sizes may differ
            layer_size = groups[f"blk.{block}"] + graph.kv[block]
        if 0 <= num_gpu <= placed:
            overflow += layer_size
            continue
        if assign(block, layer_size, drop_full=True):
            placed += 1
        else:
            overflow += layer_size
    fully_loaded = placed >= blocks

    if output_size > 0:
        if (num_gpu < 0 or placed < num_gpu) and assign(placed, output_size, drop_full=False):
            placed += 1
        if placed < blocks + 1:
            fully_loaded = False
            overflow += output_size

    graph_bytes = full if fully_loaded else partial
    for index, count in enumerate(counts):
        if count > 0:
            allocations[index] += graph_bytes
    vram = sum(allocations)
    if placed == 0 and devices:
        # Ollama's TotalSize here would still hold the reserves of the devices that had room;
        # a CPU load needs none of them.
        return estimate(info, (), num_ctx=num_ctx, num_parallel=num_parallel,
                        num_batch=num_batch, num_gpu=num_gpu, projector_bytes=projector_bytes)
    if placed == 0:
        return Placement(layers=0, total_layers=blocks + 1, layers_per_device=(), devices=(),
                         vram_bytes=0, vram_per_device=(), total_bytes=overflow, graph_bytes=0,
                         kv_bytes=kv_total, tensor_split=())
    return Placement(
        layers=placed, total_layers=blocks + 1, layers_per_device=tuple(counts),
        devices=tuple(device.id for device in devices), vram_bytes=vram,
        vram_per_device=tuple(allocations), total_bytes=vram + overflow,
        graph_bytes=graph_bytes, kv_bytes=kv_total,
        tensor_split=tuple(counts) if len(devices) > 1 else ())


def place(info: GGUFInfo, devices: Sequence[Device], *, num_ctx: int, num_parallel: int,
          num_batch: int, num_gpu: int = -1, gpu_overhead: int = 0, projector_bytes: int = 0,
          spread: bool = False) -> Placement:
    """The scheduler's choice of devices, Ollama's pickBestFullFitByLibrary then
    pickBestPartialFitByLibrary: per library (in the order first seen), the fewest devices,
    largest free memory first, that hold every layer (``num_gpu`` of them when >= 0), or all
    of them with ``spread`` (OLLAMA_SCHED_SPREAD); failing that, every device of the library
    whose estimate puts the most bytes in VRAM (the only library's, as given); no device: CPU."""
    def run(subset: Sequence[Device]) -> Placement:
        return estimate(info, subset, num_ctx=num_ctx, num_parallel=num_parallel,
                        num_batch=num_batch, num_gpu=num_gpu, gpu_overhead=gpu_overhead,
                        projector_bytes=projector_bytes)

    libraries: dict[str, list[Device]] = {}
    for device in devices:
        libraries.setdefault(device.library, []).append(device)
    for group in libraries.values():
        ordered = sorted(group, key=lambda device: device.free_bytes, reverse=True)
        sizes = [len(ordered)] if spread else range(1, len(ordered) + 1)
        for size in sizes:
            placement = run(ordered[:size])
            wanted = placement.total_layers if num_gpu < 0 else num_gpu
            if placement.layers > 0 and placement.layers >= wanted:
                return placement
    if len(libraries) <= 1:
        return run(devices)
    # Ollama compares VRAM estimates (its comment says "most layers"); the first library wins ties.
    return max((run(group) for group in libraries.values()), key=lambda p: p.vram_bytes)
