"""The batch engine's greedy path against llama-cpp-python's own sampler, on the real model."""

from __future__ import annotations

import itertools

import pytest

from tests.integration.server_process import smollm2_gguf

# llama.cpp runs inside the test process here: each test runs in a fork of pytest, so a native
# crash fails that test instead of ending the session (and orphaning its servers).
pytestmark = [pytest.mark.integration, pytest.mark.isolated]


@pytest.fixture(autouse=True)
def _cpu_library() -> None:
    """The CPU library a server on this machine would choose (a portable build has no CPU
    backend until one is loaded), loaded in the forked test process."""
    from ollamactl.runtime.builds.loader import load_cpu_library
    from ollamactl.runtime.builds.serving import CpuLibraries

    choice = CpuLibraries.discover().choose()
    load_cpu_library(str(choice.path) if choice.path else "")

PROMPT = b"<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n"
TOKENS = 40


def test_greedy_argmax_picks_the_tokens_of_llama_cpps_greedy_sampler() -> None:
    import llama_cpp

    from ollamactl.runtime.runner.batch import BatchEngine, Sampling, SequenceRequest

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


def test_a_step_puts_sequences_in_slot_order_and_a_newcomer_takes_the_lowest_free_slot() -> None:
    """llama.cpp evaluates a batch over per-slot KV streams in one pass only when its slot ids
    come in increasing, consecutive order: a freed slot is refilled from the bottom and each
    step lists the sequences by slot, whatever order they arrived in."""
    from ollamactl.runtime.runner.batch import BatchEngine, Sampling, SequenceRequest

    engine = BatchEngine(str(smollm2_gguf()), n_ctx=256, n_parallel=4, n_threads=2)
    try:
        prompt = engine.tokenize(PROMPT, False, True)

        def admit(seq_id: int, num_predict: int) -> int:
            engine.admit(SequenceRequest(id=seq_id, prompt=list(prompt),
                                         sampling=Sampling(temperature=0),
                                         num_predict=num_predict))
            return engine.active[seq_id].slot

        def batch_slots() -> list[int]:
            batch = engine.batch
            return [batch.seq_id[i][0] for i in range(batch.n_tokens)]

        assert [admit(1, 3), admit(2, 30), admit(3, 2), admit(4, 30)] == [0, 1, 2, 3]
        while {1, 3} & set(engine.active):
            engine.step()
        assert sorted(engine.free_slots) == [0, 2]
        assert admit(5, 30) == 0                  # every free slot holds the prompt: lowest
        engine.step()                             # 5 evaluates its last prompt token
        engine.step()
        assert list(engine.active) == [2, 4, 5]   # arrival order ...
        assert batch_slots() == [0, 1, 3]         # ... batch order: by slot
        assert admit(6, 30) == 2
        engine.step()
        assert batch_slots() == [0, 1, 2, 3]
    finally:
        engine.close()


def test_a_full_context_shifts_and_generation_goes_on_as_without_the_shift() -> None:
    """Ollama's context shift: a sequence that fills its slot keeps num_keep tokens, drops the
    oldest half of the rest and goes on; with shift off it ends with "length" at the edge.
    Both start with the same tokens (the shift changes nothing before it happens)."""
    import llama_cpp

    from ollamactl.runtime.runner.batch import BatchEngine, Finished, Sampling, SequenceRequest

    story = (b"<|im_start|>user\nWrite a long story about a lighthouse keeper and a storm."
             b"<|im_end|>\n<|im_start|>assistant\n")
    n_ctx, wanted = 64, 150
    engine = BatchEngine(str(smollm2_gguf()), n_ctx=n_ctx, n_parallel=2, n_threads=2)
    try:
        prompt = engine.tokenize(story, False, True)
        for seq_id, shift in ((1, False), (2, True)):
            engine.admit(SequenceRequest(id=seq_id, prompt=list(prompt), shift=shift,
                                         sampling=Sampling(temperature=0), num_predict=wanted))
        texts: dict[int, list[str]] = {1: [], 2: []}
        done: dict[int, Finished] = {}
        most = 0
        while engine.busy:
            step = engine.step()
            for seq_id, text in step.tokens:
                texts[seq_id].append(text)
            done.update((f.id, f) for f in step.finished)
            most = max([most, *(llama_cpp.llama_memory_seq_pos_max(engine.memory, s.slot)
                                for s in engine.active.values())])
        shifted, keep = engine.cached[1], 4 + (prompt[0] == engine.token_bos())
    finally:
        engine.close()
    edge = n_ctx - len(prompt) + 1          # tokens sampled until the next one has no cell
    assert (done[1].reason, done[1].eval_n) == ("length", edge)
    assert (done[2].reason, done[2].eval_n) == ("length", wanted)    # num_predict, not the edge
    assert texts[2][:edge] == texts[1]
    assert len("".join(texts[2])) > 2 * len("".join(texts[1]))
    assert most < n_ctx                       # every position stayed inside the slot
    # the slot's cache: num_keep (+ BOS) prompt tokens, then only what came after the drop
    assert shifted[:keep] == prompt[:keep] and shifted[keep:2 * keep] != prompt[keep:2 * keep]
    assert len(shifted) <= n_ctx


def test_unlimited_num_predict_stops_after_ten_contexts_of_shifting() -> None:
    """A model that never stops (counting) with num_predict -1 and shifts on: Ollama's guard
    ends it after 10 x num_ctx tokens, with done_reason "length"."""
    from ollamactl.runtime.runner.batch import (
        MAX_PREDICT_CONTEXTS,
        BatchEngine,
        Sampling,
        SequenceRequest,
    )

    engine = BatchEngine(str(smollm2_gguf()), n_ctx=32, n_parallel=1, n_threads=2)
    try:
        engine.admit(SequenceRequest(id=1, prompt=engine.tokenize(b"1, 2, 3, 4, 5, 6, 7, 8,",
                                                                   True, False),
                                     sampling=Sampling(temperature=0), num_predict=-1))
        ended = [f for _ in iter(lambda: engine.busy, False) for f in engine.step().finished]
    finally:
        engine.close()
    assert [(f.reason, f.eval_n) for f in ended] == [("length", MAX_PREDICT_CONTEXTS * 32)]
