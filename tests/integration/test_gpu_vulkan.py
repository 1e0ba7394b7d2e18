"""The GPU path end to end on a real Vulkan device: Mesa's lavapipe, a Vulkan driver that runs
on the CPU (Debian's mesa-vulkan-drivers). The Vulkan runtime is the one `scripts/test.sh`
builds and installs beside the CPU libraries (`ollamactl runtime build vulkan`, cached).

lavapipe is a CPU-type Vulkan device, which ggml-vulkan passes over unless it is named:
``GGML_VK_VISIBLE_DEVICES=0`` names it, the visibility variable a user sets for the same
purpose. Nothing is faked: real servers, real runners, real ggml devices. lavapipe decodes
slowly (a few tokens a second, after compiling its pipelines at the first prompt), so the
generations here are short.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamactl.runtime.builds.gpu_backends import installed_gpu_runtimes
from ollamactl.runtime.scheduling import placement
from ollamactl.runtime.store import gguf
from tests.integration.server_process import Server, serving, smollm2_gguf

VULKAN = [r for r in installed_gpu_runtimes() if r.backend == "vulkan"]
pytestmark = pytest.mark.skipif(not VULKAN, reason="no Vulkan runtime installed (scripts/"
                                                    "test.sh builds it)")

LAVAPIPE = {"GGML_VK_VISIBLE_DEVICES": "0"}
MODEL = "smollm2:135m"
GREEDY = {"temperature": 0, "seed": 7, "num_predict": 6, "num_ctx": 512}
LAVAPIPE_BYTES = 2 * 2**30          # lavapipe's one memory heap, as ggml reports it


def generate(server: Server, **options: Any) -> str:
    answer = server.post("/api/generate", {"model": MODEL, "prompt": "Why is the sky blue?",
                                           "stream": False, "options": {**GREEDY, **options}},
                         timeout=300)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["response"])


def ps_processor(server: Server) -> str:
    """The PROCESSOR column of `ollamactl ps`, as a user reads it."""
    done = subprocess.run([sys.executable, "-m", "ollamactl", "ps"], text=True,
                          capture_output=True, timeout=60, check=True,
                          env={"OLLAMA_HOST": server.url, "NO_PROXY": "*", "PATH": "/usr/bin"})
    header, row = done.stdout.splitlines()[:2]
    start = header.index("PROCESSOR")
    end = header.index("CONTEXT") if "CONTEXT" in header else header.index("UNTIL")
    return row[start:end].strip()


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("vulkan"), LAVAPIPE) as running:
        yield running


def test_the_whole_model_runs_on_the_vulkan_device_and_matches_the_cpu(gpu_server: Server
                                                                       ) -> None:
    on_gpu = generate(gpu_server)
    (model,) = gpu_server.ps()
    assert model["size_vram"] == model["size"] > 0
    assert model["ollamactl"] == {"layers": 31, "gpu_layers": 31, "gpu_devices": ["Vulkan0"],
                                  "gpu_error": ""}
    assert ps_processor(gpu_server) == "100% GPU"
    log = gpu_server.log.read_text()
    assert "GPU runtime vulkan: Vulkan0 llvmpipe" in log
    assert re.search(r"model loaded model=smollm2:135m .* layers=31/31 on Vulkan0", log)

    on_cpu = generate(gpu_server, num_gpu=0)      # a runner-level option: reloads on the CPU
    (model,) = gpu_server.ps()
    assert model["size_vram"] == 0 and model["ollamactl"]["gpu_layers"] == 0
    assert ps_processor(gpu_server) == "100% CPU"
    assert on_gpu == on_cpu and on_gpu.strip()


def overhead_for_a_split() -> tuple[int, int]:
    """An OLLAMA_GPU_OVERHEAD that leaves lavapipe room for about half of SmolLM2's layers
    (num_ctx 512, one slot), and the layers that then go on the device."""
    info = gguf.read_metadata(smollm2_gguf())
    device = placement.Device("Vulkan0", "vulkan", LAVAPIPE_BYTES, LAVAPIPE_BYTES,
                              placement.minimum_memory("vulkan"))
    whole = placement.place(info, [device], num_ctx=512, num_parallel=1, num_batch=512)
    for overhead in range(LAVAPIPE_BYTES - whole.vram_bytes, LAVAPIPE_BYTES, 2**20):
        where = placement.place(info, [device], num_ctx=512, num_parallel=1, num_batch=512,
                                gpu_overhead=overhead)
        if where.layers <= whole.layers // 2:
            return overhead, where.layers
    raise AssertionError("no overhead gives a split")


def test_a_small_vram_budget_splits_the_model_and_ps_shows_it(tmp_path: Path) -> None:
    overhead, layers = overhead_for_a_split()
    assert 0 < layers < 31
    env = {**LAVAPIPE, "OLLAMA_GPU_OVERHEAD": str(overhead)}
    with serving(tmp_path, env) as server:
        assert generate(server).strip()
        (model,) = server.ps()
        assert model["ollamactl"]["gpu_layers"] == layers
        assert 0 < model["size_vram"] < model["size"]
        cpu = round((model["size"] - model["size_vram"]) / model["size"] * 100)
        assert ps_processor(server) == f"{cpu}%/{100 - cpu}% CPU/GPU"


def test_a_device_that_fails_to_initialise_falls_back_to_the_cpu_with_the_reason(
        tmp_path: Path) -> None:
    from ollamactl.context import Context
    from ollamactl.doctor.probe import Probe
    from ollamactl.doctor.suite import run_checks
    from ollamactl.host import detect
    from ollamactl.system import SystemRunner

    # the Vulkan loader finds no driver: ggml-vulkan cannot initialise, as after a driver loss
    env = {**LAVAPIPE, "VK_ICD_FILENAMES": str(tmp_path / "no-such-icd.json")}
    with serving(tmp_path, env) as server:
        assert generate(server).strip()
        (model,) = server.ps()
        assert model["size_vram"] == 0
        reason = model["ollamactl"]["gpu_error"]
        assert reason.startswith("the GPU runtime failed to start (vulkan: ggml could not "
                                 "load the GPU library ")
        warnings = [line for line in server.log.read_text().splitlines()
                    if "no GPU:" in line]
        assert len(warnings) == 1 and "models load on the CPU" in warnings[0]
        ctx = Context(host=detect(), runner=SystemRunner())
        probe = Probe(ctx, environ={"OLLAMA_HOST": server.url}, http_timeout_s=5)
        (finding,) = run_checks(probe, ["gpu.offload"])
        assert finding.status == "fail" and reason in finding.summary
