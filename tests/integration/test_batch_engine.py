"""The batch engine's greedy path against llama-cpp-python's own sampler, on the real model."""

from __future__ import annotations

import itertools

import pytest

from tests.integration.server_process import smollm2_gguf

pytestmark = pytest.mark.integration

PROMPT = b"<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n"
TOKENS = 40


def test_greedy_argmax_picks_the_tokens_of_llama_cpps_greedy_sampler() -> None:
    import llama_cpp

    from ollamactl.runtime.batch import BatchEngine, Sampling, SequenceRequest

    engine = BatchEngine(str(smollm2_gguf()), n_ctx=512, n_parallel=2, n_threads=2,
                         flash_attention=False)  # as the reference: Llama's default
    try:
        prompt = engine.tokenize(PROMPT, False, True)
        # two neighbours in the batch, so rows other than 0 are read too
        for seq_id in (1, 2):
            engine.admit(SequenceRequest(id=seq_id, prompt=list(prompt),
                                         sampling=Sampling(temperature=0), num_predict=TOKENS))
        texts: dict[int, list[str]] = {1: [], 2: []}
        while engine.busy:
            for seq_id, text in engine.step().tokens:
                texts[seq_id].append(text)
        ours = texts[1]
        assert texts[2] == ours
    finally:
        engine.close()
    reference = llama_cpp.Llama(model_path=str(smollm2_gguf()), n_ctx=512, n_threads=2,
                                verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(reference.model)
    try:
        generated = itertools.takewhile(
            lambda t: not llama_cpp.llama_vocab_is_eog(vocab, t),
            itertools.islice(reference.generate(prompt, temp=0.0, repeat_penalty=1.0), TOKENS))
        expected = reference.detokenize(list(generated)).decode()
    finally:
        reference.close()
    assert len(ours) > 5
    assert "".join(ours) == expected
