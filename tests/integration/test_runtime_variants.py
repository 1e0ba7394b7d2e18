"""The portable runtime on this machine's real CPU: every CPU library it runs decodes, AMX serves
only when its probe passed here, OLLAMA_LLM_LIBRARY selects the library a real server loads,
and a runner killed by SIGILL reaches the caller diagnosed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import requests

from ollamactl.runtime.builds import recipe, selftest
from ollamactl.runtime.builds import variants as v
from ollamactl.runtime.builds.serving import CpuLibraries
from ollamactl.runtime.runner.config import RunnerConfig
from ollamactl.runtime.scheduling.runner_client import RunnerDied, RunnerProcess
from tests.integration.server_process import SMOLLM2, make_store, running_server, smollm2_gguf

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CPU = v.detect()
LIB_DIR = recipe.library_dir()
PRESENT = v.available(LIB_DIR, CPU.arch) if LIB_DIR else {}
RUNNABLE = [x for x in v.for_arch(CPU.arch)
            if x.tag in PRESENT and CPU.runs(x) and not x.needs_probe]


def test_the_installed_runtime_is_the_portable_build_with_a_baseline() -> None:
    record = recipe.installed_record()
    assert record is not None, "llama-cpp-python was not built by ollamactl's recipe"
    assert "-DGGML_NATIVE=OFF" in record["cmake_args"]  # type: ignore[operator]
    assert v.for_arch(CPU.arch)[0].tag in PRESENT       # starts on any CPU of this arch


@pytest.mark.parametrize("variant", RUNNABLE, ids=[x.name for x in RUNNABLE])
def test_each_cpu_library_this_cpu_runs_decodes_the_bundled_model(variant: v.Variant) -> None:
    outcome = selftest.run_variant(str(PRESENT[variant.tag]), str(smollm2_gguf()))
    assert outcome["ok"], outcome
    assert outcome["sample"]


def test_amx_serves_only_when_its_probe_passed_on_this_machine() -> None:
    amx = [x for x in v.for_arch(CPU.arch) if x.needs_probe and x.tag in PRESENT]
    if not amx or not CPU.runs(amx[0]):
        pytest.skip("this CPU does not claim AMX (no AMX library was built)")
    outcome = selftest.run_variant(str(PRESENT[amx[0].tag]), str(smollm2_gguf()))
    chosen = v.choose(CPU, PRESENT, verdicts={amx[0].tag: bool(outcome["ok"])})
    assert (chosen.variant == amx[0]) is bool(outcome["ok"])
    assert v.choose(CPU, PRESENT).variant != amx[0]          # never without a probe


def test_ollama_llm_library_selects_the_library_a_real_server_loads(tmp_path: Path) -> None:
    forced = RUNNABLE[0]    # the baseline: not what the server would pick by itself
    make_store(tmp_path / "models")
    log = tmp_path / "server.log"
    with running_server(tmp_path / "models", {"OLLAMA_LLM_LIBRARY": forced.name}, log) as (
            url, _):
        answer = requests.post(f"{url}/api/generate", json={
            "model": SMOLLM2, "prompt": "Say hi", "stream": False,
            "options": {"num_predict": 4, "temperature": 0}}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["eval_count"] > 0
    text = log.read_text()
    assert f"uses {forced.name} ({PRESENT[forced.tag].name}): OLLAMA_LLM_LIBRARY" in text
    assert f"loaded CPU backend from {PRESENT[forced.tag]}" in text    # ggml's own line


def test_a_library_this_runtime_lacks_is_refused_with_what_it_has(tmp_path: Path) -> None:
    make_store(tmp_path / "models")
    with running_server(tmp_path / "models", {"OLLAMA_LLM_LIBRARY": "cpu_imaginary"},
                        tmp_path / "server.log") as (url, _):
        answer = requests.post(f"{url}/api/generate", json={
            "model": SMOLLM2, "prompt": "Say hi", "stream": False}, timeout=60)
    assert answer.status_code == 500
    assert "OLLAMA_LLM_LIBRARY=cpu_imaginary is not a CPU library of this runtime" in \
        answer.json()["error"]


class _DiesOfSigill(RunnerConfig):
    """A runner process that the CPU kills at its first instruction, as a build for a newer
    CPU is (the death is real; only what the process runs is not a model)."""

    def to_argv(self) -> list[str]:
        return [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]


def test_a_runner_killed_by_sigill_is_diagnosed_and_the_next_load_is_safer() -> None:
    libraries = CpuLibraries.discover(requested="")
    first = libraries.choose()
    if first.variant is None:
        pytest.skip("this llama.cpp build has no CPU variants")

    async def start() -> str:
        runner = RunnerProcess(_DiesOfSigill(model_path=str(smollm2_gguf()), num_ctx=256),
                               libraries=libraries)
        with pytest.raises(RunnerDied) as died:
            await runner.start(timeout_s=30)
        return str(died.value)

    message = asyncio.run(start())
    assert message.startswith("llama runner process has terminated: signal: illegal "
                              "instruction (illegal instruction")
    assert f"the CPU library {first.name}" in message
    assert first.variant.instruction_set in message
    assert "ollamactl runtime selftest --force" in message
    if first.variant.tag != v.for_arch(CPU.arch)[0].tag:
        assert libraries.choose().variant != first.variant     # demoted for the next load
