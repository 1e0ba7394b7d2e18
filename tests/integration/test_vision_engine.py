"""A prompt with an image in the batch engine, on SmolLM2 and the generated projector: admitted
while another sequence generates, neither changes the other's answer, and a slot's cached
image is reused only for the same image."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server_process import smollm2_gguf
from tests.vision_builder import IMAGE_TOKENS, png, write_projector

pytestmark = [pytest.mark.integration, pytest.mark.isolated, pytest.mark.slow]

RED = base64.b64encode(png((200, 30, 30))).decode()
BLUE = base64.b64encode(png((20, 30, 220))).decode()
SEGMENTS = [("<|im_start|>user\n", True), ("[img-0]What is in the picture?", False),
            ("<|im_end|>\n<|im_start|>assistant\n", True)]


@pytest.fixture(autouse=True)
def _cpu_library() -> None:
    """The CPU library a server here would choose, loaded in the forked test process."""
    from ollamactl.runtime.builds.loader import load_cpu_library
    from ollamactl.runtime.builds.serving import CpuLibraries

    choice = CpuLibraries.discover().choose()
    load_cpu_library(str(choice.path) if choice.path else "")


def test_an_image_joins_a_running_batch_without_changing_its_neighbour(tmp_path: Path) -> None:
    from ollamactl.runtime.runner.batch import BatchEngine, Sampling, SequenceRequest
    from ollamactl.runtime.runner.vision import Vision

    engine = BatchEngine(str(smollm2_gguf()), n_ctx=256, n_parallel=2, n_threads=2)
    vision = Vision(str(write_projector(tmp_path / "mmproj.gguf")), engine.model,
                    n_batch=engine.n_batch, n_threads=2, use_gpu=False)

    def tokenize(segments: Sequence[Sequence[Any]], context: Sequence[int]) -> list[int]:
        tokens = list(context)
        for text, special in segments:
            tokens += engine.tokenize(str(text).encode(), not tokens, bool(special)) \
                if text else []
        return tokens

    def admit(seq_id: int, image: str | None) -> None:
        if image is None:
            prompt, media = tokenize([(t.replace("[img-0]", ""), s) for t, s in SEGMENTS], []), None
        else:
            prompt, media = vision.prompt(tokenize, SEGMENTS, [image], [])
        try:
            engine.admit(SequenceRequest(id=seq_id, prompt=prompt, media=media,
                                         sampling=Sampling(temperature=0), num_predict=16))
        finally:
            if media is not None:
                media.close()

    def run(*starts: tuple[int, str | None, int]) -> dict[int, str]:
        """Admit each (id, image, at step) and step until all are done."""
        texts: dict[int, str] = {}
        step = 0
        while step == 0 or engine.busy:
            for seq_id, image, at in starts:
                if at == step:
                    admit(seq_id, image)
                    texts[seq_id] = ""
            for seq_id, text in engine.step().tokens:
                texts[seq_id] += text
            step += 1
        return texts

    try:
        alone = run((1, None, 0))[1]
        red = run((2, RED, 0))[2]
        together = run((3, None, 0), (4, RED, 3))
        assert together == {3: alone, 4: red}
        assert len(vision.prompt(tokenize, SEGMENTS, [RED], [])[0]) == \
            len(tokenize([(t.replace("[img-0]", ""), s) for t, s in SEGMENTS], [])) + IMAGE_TOKENS
        # both slots now hold the red image: the blue one must not reuse its KV
        blue = run((5, BLUE, 0))[5]
        assert blue != red
        assert run((6, RED, 0))[6] == red
    finally:
        vision.close()
        engine.close()
