"""The batch engine with a LoRA adapter on the real SmolLM2: llama.cpp loads the adapter GGUF
and applies it (an adapter whose B is zero changes nothing, a strong one changes the answer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gguf_builder import tiny_lora
from tests.integration.server_process import smollm2_gguf

# llama.cpp runs inside the test process here: each test runs in a fork of pytest (see
# test_batch_engine.py), so a native crash fails that test only.
pytestmark = [pytest.mark.integration, pytest.mark.isolated]

PROMPT = b"<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n"


def _greedy(adapters: tuple[str, ...]) -> str:
    from ollamactl.runtime.builds.loader import load_cpu_library
    from ollamactl.runtime.builds.serving import CpuLibraries
    from ollamactl.runtime.runner.batch import BatchEngine, Sampling, SequenceRequest

    choice = CpuLibraries.discover().choose()
    load_cpu_library(str(choice.path) if choice.path else "")
    engine = BatchEngine(str(smollm2_gguf()), n_ctx=256, n_threads=2, adapters=adapters)
    try:
        engine.admit(SequenceRequest(id=1, prompt=engine.tokenize(PROMPT, False, True),
                                     sampling=Sampling(temperature=0), num_predict=16))
        pieces: list[str] = []
        while engine.busy:
            pieces += [text for _, text in engine.step().tokens]
        return "".join(pieces)
    finally:
        engine.close()


def test_a_lora_adapter_is_applied(tmp_path: Path) -> None:
    plain = _greedy(())
    assert _greedy((str(tiny_lora(tmp_path / "zero.gguf")),)) == plain
    assert _greedy((str(tiny_lora(tmp_path / "strong.gguf", strength=1.0)),)) != plain


def test_an_adapter_for_other_shapes_is_refused(tmp_path: Path) -> None:
    from ollamactl.runtime.runner.batch import EngineError

    with pytest.raises(EngineError, match="unable to load the LoRA adapter"):
        _greedy((str(tiny_lora(tmp_path / "narrow.gguf", n_embd=256)),))
