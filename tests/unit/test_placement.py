"""Layer placement: Ollama's memory_test.go cases, budgets, limits, devices, and the real SmolLM2.

Every expected number is worked out by hand from Ollama's formulas (llm/memory.go
estimateGPULayers, fs/ggml/ggml.go GraphSize); the comment beside each says how. ``L`` is a
layer's weights plus its KV cache, ``M`` the device's minimum reserve, ``G`` the graph.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ollamactl.humanize import GIB, MIB
from ollamactl.runtime.scheduling.placement import (
    Device,
    Placement,
    estimate,
    minimum_memory,
    place,
)
from ollamactl.runtime.store.gguf import GGUFInfo, TensorInfo, read_metadata
from tests.gguf_builder import build, kv_string, kv_string_array, kv_u32, smollm2_path, tensor_info

M = 457 * MIB  # CUDA/ROCm/Vulkan minimum memory (ml.DeviceInfo.MinimumMemory)


def device(free: int, *, index: int = 0, library: str = "vulkan") -> Device:
    prefix = {"cuda": "CUDA", "vulkan": "Vulkan", "metal": "Metal", "hip": "ROCm"}[library]
    return Device(f"{prefix}{index}", library, free, free, minimum_memory(library))


def test_minimum_memory_per_library() -> None:
    assert minimum_memory("cuda") == minimum_memory("hip") == minimum_memory("vulkan") == M
    assert minimum_memory("metal") == 512 * MIB


# --- Ollama's llm/memory_test.go ------------------------------------------------------------

@pytest.fixture(scope="module")
def ollama_dummy(tmp_path_factory: pytest.TempPathFactory) -> GGUFInfo:
    """memory_test.go's model: 5 blocks and an output of one F32 element (4 bytes) each,
    embedding 4096, 32 heads and 32 KV heads, a one-token vocabulary."""
    names = [f"blk.{i}.attn.weight" for i in range(5)] + ["output.weight"]
    blob = build(
        [kv_string("general.architecture", "llama"), kv_u32("llama.context_length", 32),
         kv_u32("llama.embedding_length", 4096), kv_u32("llama.block_count", 5),
         kv_u32("llama.attention.head_count", 32), kv_u32("llama.attention.head_count_kv", 32),
         kv_string_array("tokenizer.ggml.tokens", [" "])],
        [tensor_info(name, (1, 1, 1, 1), 0, 32 * i) for i, name in enumerate(names)],
        data=b"\x00" * (32 * len(names)))
    path = tmp_path_factory.mktemp("ollama") / "dummy.gguf"
    path.write_bytes(blob)
    return read_metadata(path)


# Ollama's DefaultOptions with OLLAMA_CONTEXT_LENGTH=2048: num_ctx 2048, num_batch 512.
# head dim 4096/32 = 128; KV per block = 2048 x (128 + 128) x 32 heads x 2 bytes = 33554432;
# L = 4 + 33554432 = 33554436 (the test's layerSize).
DUMMY_LAYER = 33554436
DUMMY_OUTPUT = 4
# llama full = max(4*512*(1 + 4*4096 + 2048*(1+32)), 4*512*(4096+1)) = 2048*83969 = 171968512
DUMMY_GRAPH_FULL = 171968512
# llama partial = 4*512*4096 + max(4*512*(1+4096+4096) + 4096*4096*9/16
#   + 4*2048*(512*32 + 128*32), ...) = 8388608 + 16779264 + 9437184 + 167772160 = 202377216
DUMMY_GRAPH_PARTIAL = 202377216


def dummy(info: GGUFInfo, devices: list[Device], **options: int) -> Placement:
    return estimate(info, devices, num_ctx=2048, num_parallel=1, num_batch=512, **options)


def test_ollama_cpu_scenario(ollama_dummy: GGUFInfo) -> None:
    placement = dummy(ollama_dummy, [])
    assert (placement.layers, placement.graph_bytes, placement.vram_bytes) == (0, 0, 0)
    assert placement.on_cpu and placement.devices == () and placement.tensor_split == ()
    assert placement.total_layers == 6
    assert placement.kv_bytes == 5 * 33554432
    # CPU TotalSize: five layers with their KV, plus the output layer; no graph.
    assert placement.total_bytes == 5 * DUMMY_LAYER + DUMMY_OUTPUT


def test_ollama_graph_sizes(ollama_dummy: GGUFInfo) -> None:
    # One device with room for everything: full graph; capped at one layer: partial graph.
    big = [device(8 * GIB, library="cuda")]
    full = dummy(ollama_dummy, big)
    assert full.full and full.graph_bytes == DUMMY_GRAPH_FULL
    # M + buffer layer + 5 layers + output + full graph
    assert full.vram_bytes == full.total_bytes == M + 6 * DUMMY_LAYER + 4 + DUMMY_GRAPH_FULL
    assert dummy(ollama_dummy, big, num_gpu=1).graph_bytes == DUMMY_GRAPH_PARTIAL


@pytest.mark.parametrize(("layer0", "layer1", "expect0", "expect1"), [
    (1, 1, 1, 1), (2, 1, 2, 1), (2, 2, 2, 2), (1, 2, 1, 2),
    (3, 3, 3, 3), (4, 4, 3, 3), (6, 6, 3, 3), (0, 3, 0, 3),
])
def test_ollama_dual_cuda_asymmetry(ollama_dummy: GGUFInfo, layer0: int, layer1: int,
                                    expect0: int, expect1: int) -> None:
    """memory_test.go: each GPU gets M + buffer layer + N layers + 1 byte + the graph, and the
    output's 4 bytes on the first GPU that takes layers; two GPUs use the partial graph."""
    graph = max(DUMMY_GRAPH_FULL, DUMMY_GRAPH_PARTIAL)
    free0 = M + DUMMY_LAYER + layer0 * DUMMY_LAYER + 1 + graph + (DUMMY_OUTPUT if layer0 else 0)
    free1 = M + DUMMY_LAYER + layer1 * DUMMY_LAYER + 1 + graph + (0 if layer0 else DUMMY_OUTPUT)
    devices = [Device("CUDA0", "cuda", free0, free0, M), Device("CUDA1", "cuda", free1, free1, M)]
    placement = dummy(ollama_dummy, devices)
    assert placement.layers == expect0 + expect1
    assert placement.tensor_split == placement.layers_per_device == (expect0, expect1)
    assert placement.vram_bytes == sum(placement.vram_per_device)
    if placement.layers < 6:
        assert placement.vram_bytes < placement.total_bytes
    else:
        assert placement.vram_bytes == placement.total_bytes


# --- model sizes x budgets, on a model whose arithmetic is easy -----------------------------

def synthetic(blocks: int, weight_mib: int, output_mib: int, *, arch: str = "qwen3",
              extra: dict[str, object] | None = None, vocab: int = 0,
              embedding: int = 512, heads: int = 8, heads_kv: int = 8) -> GGUFInfo:
    """A header-only model: per block one F32 tensor of ``weight_mib``, an ``output`` of
    ``output_mib`` and a 64 MiB ``token_embd`` that Ollama leaves out once ``output`` exists."""
    def tensor(name: str, size: int) -> TensorInfo:
        return TensorInfo(name, "F32", (size // 4,), 0, size)

    tensors = [tensor(f"blk.{i}.ffn.weight", weight_mib * MIB) for i in range(blocks)]
    tensors += [tensor("output.weight", output_mib * MIB), tensor("token_embd.weight", 64 * MIB)]
    kv: dict[str, object] = {
        "general.architecture": arch, f"{arch}.block_count": blocks,
        f"{arch}.embedding_length": embedding, f"{arch}.attention.head_count": heads,
        f"{arch}.attention.head_count_kv": heads_kv, "tokenizer.ggml.tokens": ["x"] * vocab,
        **{f"{arch}.{key}": value for key, value in (extra or {}).items()}}
    return GGUFInfo(path=Path("synthetic.gguf"), version=3, kv=kv, tensors=tensors,
                    alignment=32, data_offset=0, file_size=0, architecture=arch,
                    parameter_count=0, file_type=None, quantization="F32", context_length=None,
                    embedding_length=embedding, chat_template=None)


def small(info: GGUFInfo, devices: list[Device], **options: int) -> Placement:
    return estimate(info, devices, num_ctx=512, num_parallel=1, num_batch=512, **options)


# qwen3 has no GraphSize formula: partial = full = (heads / min kv heads) x KV total / 6.
# KV per block = 512 ctx x (64 + 64) x 8 heads x 2 bytes = 1 MiB.
# A: 24 blocks of 9 MiB -> L = 10 MiB, output 20 MiB, G = 1 x 24 MiB / 6 = 4 MiB.
# B: 48 blocks of 3 MiB -> L = 4 MiB, output 50 MiB, G = 48 MiB / 6 = 8 MiB.
MODELS = {"A": (24, 9, 20, 10, 4), "B": (48, 3, 50, 4, 8)}


@pytest.mark.parametrize(("model", "vram_mib"), [("A", 457 + 10 + 240 + 20 + 4),
                                                  ("B", 457 + 4 + 192 + 50 + 8)])
def test_everything_fits(model: str, vram_mib: int) -> None:
    blocks, weight, output, _, _ = MODELS[model]
    placement = small(synthetic(blocks, weight, output), [device(8 * GIB)])
    # vram = M + buffer layer + every layer + output + G; nothing left on the CPU
    assert placement.full and placement.layers == blocks + 1
    assert placement.vram_bytes == placement.total_bytes == vram_mib * MIB
    assert placement.devices == ("Vulkan0",) and placement.tensor_split == ()


@pytest.mark.parametrize(("model", "layers", "vram_mib", "total_mib"), [
    # A: free = M + G + 100; layer k+1 fits while 561 > 467 + 4 + 10 + 10k, k < 8: 8 layers;
    # vram = M + 10 + 8 x 10 + 4 = 551; total = 551 + 16 x 10 + 20 = 731.
    ("A", 8, 551, 731),
    # B: free = M + G + 100 = 565; fits while 565 > 461 + 8 + 4 + 4k, k < 23: 23 layers;
    # vram = M + 4 + 23 x 4 + 8 = 561; total = 561 + 25 x 4 + 50 = 711.
    ("B", 23, 561, 711),
])
def test_a_100_mib_budget_offloads_some_layers(model: str, layers: int, vram_mib: int,
                                                total_mib: int) -> None:
    blocks, weight, output, _, graph = MODELS[model]
    placement = small(synthetic(blocks, weight, output), [device(M + graph * MIB + 100 * MIB)])
    assert (placement.layers, placement.layers_per_device) == (layers, (layers,))
    assert not placement.full and not placement.on_cpu
    assert placement.graph_bytes == graph * MIB
    assert (placement.vram_bytes, placement.total_bytes) == (vram_mib * MIB, total_mib * MIB)


@pytest.mark.parametrize(("model", "total_mib"), [("A", 24 * 10 + 20), ("B", 48 * 4 + 50)])
def test_too_small_a_device_leaves_everything_on_the_cpu(model: str, total_mib: int) -> None:
    blocks, weight, output, layer, graph = MODELS[model]
    # A device is skipped below M + G + 2 L; one byte short of that.
    free = M + graph * MIB + 2 * layer * MIB - 1
    placement = small(synthetic(blocks, weight, output), [device(free)])
    assert placement.on_cpu and placement.devices == () and placement.vram_bytes == 0
    assert placement.total_bytes == total_mib * MIB  # layers with KV + output, no graph


def test_num_gpu_zero_is_a_cpu_placement() -> None:
    placement = small(synthetic(24, 9, 20), [device(8 * GIB)], num_gpu=0)
    # no reserve held on the idle GPU: 24 x 10 + 20 MiB
    assert placement.on_cpu and placement.total_bytes == 260 * MIB


def test_num_gpu_caps_the_layers() -> None:
    info = synthetic(24, 9, 20)
    five = small(info, [device(8 * GIB)], num_gpu=5)
    # 5 blocks, no output: vram = M + 10 + 50 + 4 = 521; total = 521 + 19 x 10 + 20 = 731
    assert five.layers == 5 and not five.full
    assert (five.vram_bytes, five.total_bytes) == (521 * MIB, 731 * MIB)
    assert small(info, [device(8 * GIB)], num_gpu=25).full
    # the budget still wins over a larger request: 8 layers as in the 100 MiB case
    assert small(info, [device(M + 104 * MIB)], num_gpu=10).layers == 8


def test_gpu_overhead_is_kept_free_on_the_device() -> None:
    info = synthetic(24, 9, 20)
    # 1 GiB with 463 MiB set aside leaves the 100 MiB budget case: 8 layers, and the
    # overhead is not part of the VRAM estimate (vram 551 MiB as there).
    placement = small(info, [device(GIB)], gpu_overhead=463 * MIB)
    assert placement.layers == 8 and placement.vram_bytes == 551 * MIB
    assert small(info, [device(GIB)]).full
    # 545 MiB aside: 479 MiB left < M + G + 2 L = 481 MiB, the device is skipped
    assert small(info, [device(GIB)], gpu_overhead=545 * MIB).on_cpu


def test_projector_goes_on_the_first_device() -> None:
    info = synthetic(24, 9, 20)
    with_projector = small(info, [device(8 * GIB)], projector_bytes=30 * MIB)
    assert with_projector.vram_bytes == (731 + 30) * MIB
    # on the CPU the projector counts in the total
    assert small(info, [], projector_bytes=30 * MIB).total_bytes == (260 + 30) * MIB


def test_output_layer_is_placed_last() -> None:
    # All 24 blocks fit once free > M + 10 + 230 + 4 + 10 = 711 MiB, the output needs
    # free > M + 10 + 240 + 4 + 20 = 731 MiB: at 720 MiB every block is on the GPU, not the
    # output; graph partial, vram = M + 250 + 4 = 711, total = 711 + 20 = 731.
    placement = small(synthetic(24, 9, 20), [device(720 * MIB)])
    assert placement.layers == 24 and placement.total_layers == 25 and not placement.full
    assert (placement.vram_bytes, placement.total_bytes) == (711 * MIB, 731 * MIB)


def test_blocks_are_offloaded_from_the_last_one() -> None:
    # blk.23 is 101 MiB (L = 102): with the 100 MiB budget none fits, since the last block
    # goes first and llama.cpp offloads a suffix of the layers.
    info = synthetic(24, 9, 20)
    last = TensorInfo("blk.23.ffn.weight", "F32", (1,), 0, 101 * MIB)
    info = dataclasses.replace(info, tensors=[*info.tensors[:23], last, *info.tensors[24:]])
    assert small(info, [device(M + 104 * MIB)]).on_cpu


def test_two_devices_without_and_with_spread() -> None:
    info = synthetic(24, 9, 20)
    devices = [device(GIB, index=0), device(2 * GIB, index=1)]
    packed = place(info, devices, num_ctx=512, num_parallel=1, num_batch=512)
    # the largest free device alone holds all 731 MiB
    assert packed.devices == ("Vulkan1",) and packed.full and packed.tensor_split == ()
    spread = place(info, devices, num_ctx=512, num_parallel=1, num_batch=512, spread=True)
    # sorted by free: [Vulkan1, Vulkan0]; blocks 23..0 go to index i % 2, so odd blocks to
    # Vulkan0, even ones to Vulkan1 (12 each); the output to index 24 % 2 = 0, Vulkan1.
    assert spread.devices == ("Vulkan1", "Vulkan0") and spread.full
    assert spread.tensor_split == spread.layers_per_device == (13, 12)
    # M + buffer + 12 layers (+ output) + G each: 457+10+120+20+4 and 457+10+120+4
    assert spread.vram_per_device == (611 * MIB, 591 * MIB)
    assert spread.vram_bytes == spread.total_bytes == 1202 * MIB


def test_partial_fit_takes_the_library_with_the_most_vram() -> None:
    info = synthetic(24, 9, 20)
    cuda = Device("CUDA0", "cuda", M + 104 * MIB, 4 * GIB, M)  # 8 layers, vram 551 MiB
    # 600 MiB: fits while 600 > 481 + 10k, k <= 11: 12 layers, vram M + 10 + 120 + 4 = 591
    vulkan = Device("Vulkan0", "vulkan", 600 * MIB, 4 * GIB, M)
    placement = place(info, [cuda, vulkan], num_ctx=512, num_parallel=1, num_batch=512)
    assert placement.devices == ("Vulkan0",) and placement.layers == 12
    assert placement.vram_bytes == 591 * MIB


def test_place_without_devices_or_with_num_gpu_zero_is_cpu() -> None:
    info = synthetic(24, 9, 20)
    for placement in (place(info, [], num_ctx=512, num_parallel=1, num_batch=512),
                      place(info, [device(8 * GIB)], num_ctx=512, num_parallel=1,
                            num_batch=512, num_gpu=0)):
        assert placement.on_cpu and placement.total_bytes == 260 * MIB


def test_estimate_takes_one_library() -> None:
    with pytest.raises(ValueError, match="one library"):
        small(synthetic(2, 1, 1), [device(GIB), device(GIB, library="cuda")])


# --- architecture graph sizes ---------------------------------------------------------------

def test_qwen2_graph_sizes() -> None:
    # embedding 64, 4 heads, 2 KV heads (head dim 16), 2 blocks, vocab 100, ctx 32, batch 16:
    # full = max(4*16*(64+100), 4*16*(1 + 128 + 32 + 32*4)) = max(10496, 18496) = 18496
    # partial = max(10496 + 64*100*105/128, 4*(16*(1 + 128 + 32*5) + 64*33))
    #         = max(10496 + 5250, 26944) = 26944
    info = synthetic(2, 1, 1, arch="qwen2", vocab=100, embedding=64, heads=4, heads_kv=2)
    options = {"num_ctx": 32, "num_parallel": 1, "num_batch": 16}
    assert estimate(info, [device(8 * GIB)], **options).graph_bytes == 18496
    assert estimate(info, [device(8 * GIB)], num_gpu=1, **options).graph_bytes == 26944
    # KV per block = 32 x (16 + 16) x 2 heads x 2 bytes = 4096
    assert estimate(info, [], **options).kv_bytes == 2 * 4096


def test_gemma3_sliding_window_cache_and_graph() -> None:
    # embedding 64, 4 heads, 2 KV heads, key/value length 16, window 8, 6 blocks, vocab 100;
    # ctx 32 x 2 slots = 64, batch 16. Block 6 is global: 64 x 32 x 2 x 2 = 8192; the others
    # hold 2 x 8 + 16 = 32 tokens: 32 x 32 x 2 x 2 = 4096. Total 5 x 4096 + 8192 = 28672.
    info = synthetic(6, 1, 1, arch="gemma3", vocab=100, embedding=64, heads=4, heads_kv=2,
                     extra={"attention.key_length": 16, "attention.value_length": 16,
                            "attention.sliding_window": 8})
    options = {"num_ctx": 32, "num_parallel": 2, "num_batch": 16}
    assert estimate(info, [], **options).kv_bytes == 28672
    # full = max(4*16*164, 4*16*(2 + 64 + 256 + 128 + 128)) = 64 * 578 = 36992
    assert estimate(info, [device(8 * GIB)], **options).graph_bytes == 36992
    # partial = max(16384 + 5250 + 6400, 4*16*(128+1+128+64+256) + 4*16*64*8 + 64*16*4*9/16)
    #         = max(28034, 36928 + 32768 + 2304) = 72000
    assert estimate(info, [device(8 * GIB)], num_gpu=1, **options).graph_bytes == 72000


def test_metal_always_uses_the_full_graph() -> None:
    # qwen2 as above: on Metal the partial graph is the full one (18496), and M is 512 MiB.
    info = synthetic(2, 1, 1, arch="qwen2", vocab=100, embedding=64, heads=4, heads_kv=2)
    metal = [device(8 * GIB, library="metal")]
    placement = estimate(info, metal, num_ctx=32, num_parallel=1, num_batch=16, num_gpu=1)
    assert placement.graph_bytes == 18496
    # 512 MiB + buffer block (1 MiB + 4096) + one block + graph
    assert placement.vram_bytes == 512 * MIB + 2 * (MIB + 4096) + 18496


def test_recurrent_blocks_hold_a_fixed_state() -> None:
    # head_count_kv [0, 8]: block 0 is an SSM block, f32 state of (conv 4 - 1) x (inner 64
    # + 2 x 1 group x state 16) + state 16 x inner 64 = 288 + 1024 elements = 5248 bytes;
    # block 1 is attention: 512 ctx x 128 x 8 heads x 2 bytes = 1 MiB.
    info = synthetic(2, 1, 1, extra={"attention.head_count_kv": [0, 8], "ssm.conv_kernel": 4,
                                     "ssm.inner_size": 64, "ssm.state_size": 16,
                                     "ssm.group_count": 1})
    assert small(info, []).kv_bytes == 5248 + MIB


# --- the real bundled SmolLM2-135M (llama, Q4_1) --------------------------------------------

# 30 blocks of 2216448 bytes (2 norms x 2304 + 3 FFN x 552960 + k/v 2 x 69120 + q/o 2 x 207360);
# 576 embedding, 9 heads, 3 KV heads: head dim 64; vocab 49152; no output tensor, so the
# output layer is output_norm 2304 + token_embd (Q8_0 576 x 49152) 30081024 = 30083328.
# num_ctx 4096, 1 slot: KV per block = 4096 x 128 x 3 x 2 = 3145728; L = 5362176.
SMOL_LAYER = 5362176
SMOL_OUTPUT = 30083328
# llama full = max(4*512*(1 + 2304 + 4096*10), 4*512*(576 + 49152)) = 2048 x 49728 = 101842944
SMOL_GRAPH_FULL = 101842944
# llama partial = 4*512*576 + max(2048*4673 + 576*576*9/16 + 16384*(512*9 + 64*3),
#   2048*49728 + 576*49152*105/128) = 1179648 + max(88400128, 101842944 + 23224320) = 126246912
SMOL_GRAPH_PARTIAL = 126246912


@pytest.fixture(scope="module")
def smollm2() -> GGUFInfo:
    return read_metadata(smollm2_path())


def smol(info: GGUFInfo, devices: list[Device], **options: bool) -> Placement:
    return place(info, devices, num_ctx=4096, num_parallel=1, num_batch=512, **options)


def test_smollm2_is_full_on_a_2_gib_lavapipe(smollm2: GGUFInfo) -> None:
    placement = smol(smollm2, [Device("Vulkan0", "vulkan", 2 * GIB, 2 * GIB, M, "llvmpipe")])
    assert placement.full and placement.layers == placement.total_layers == 31
    assert placement.kv_bytes == 30 * 3145728
    assert placement.graph_bytes == SMOL_GRAPH_FULL
    # M + buffer + 30 layers + output + full graph = 777352960 (~741 MiB)
    expected = M + 31 * SMOL_LAYER + SMOL_OUTPUT + SMOL_GRAPH_FULL
    assert placement.vram_bytes == placement.total_bytes == expected == 777352960


def test_smollm2_splits_with_the_cpu_on_a_tight_budget(smollm2: GGUFInfo) -> None:
    # free = M + partial graph + 10 L + 1: layer k+1 fits while (k+2) L < 10 L + 1: 9 layers.
    free = M + SMOL_GRAPH_PARTIAL + 10 * SMOL_LAYER + 1
    placement = smol(smollm2, [Device("Vulkan0", "vulkan", free, 2 * GIB, M)])
    assert placement.layers == 9 and placement.graph_bytes == SMOL_GRAPH_PARTIAL
    assert placement.vram_bytes == M + 10 * SMOL_LAYER + SMOL_GRAPH_PARTIAL == 659067904
    # the 21 remaining blocks and the output stay on the CPU
    assert placement.total_bytes == 659067904 + 21 * SMOL_LAYER + SMOL_OUTPUT == 801756928


def test_smollm2_spread_over_two_1_gib_devices(smollm2: GGUFInfo) -> None:
    devices = [Device(f"Vulkan{i}", "vulkan", GIB, GIB, M) for i in range(2)]
    assert smol(smollm2, devices).devices == ("Vulkan0",)  # one device holds it
    spread = smol(smollm2, devices, spread=True)
    # equal free memory keeps the order; blocks 29..0 to i % 2: 15 each; output to 30 % 2 = 0
    assert spread.full and spread.tensor_split == (16, 15)
    # two devices use the partial graph: M + 16 L (+ output) + partial graph
    assert spread.vram_per_device == (M + 16 * SMOL_LAYER + SMOL_OUTPUT + SMOL_GRAPH_PARTIAL,
                                      M + 16 * SMOL_LAYER + SMOL_GRAPH_PARTIAL)
    assert spread.vram_per_device == (721324288, 691240960)


def test_smollm2_on_the_cpu(smollm2: GGUFInfo) -> None:
    # 30 x L + output = 190948608: Ollama's CPU TotalSize has no compute graph
    assert smol(smollm2, []).total_bytes == 30 * SMOL_LAYER + SMOL_OUTPUT == 190948608
    # 4 slots of 4096: the cache is for 16384 tokens, 4 x 3145728 per block
    four = place(smollm2, [], num_ctx=4096, num_parallel=4, num_batch=512)
    assert four.kv_bytes == 30 * 4 * 3145728
