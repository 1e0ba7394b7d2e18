"""Continuous batching on llama.cpp's low-level API: many sequences, one context, one decode.

Runner process only (imports llama_cpp). The :class:`BatchEngine` owns the model, one context
whose KV cache is split into ``n_parallel`` per-sequence streams (slots), and one
``llama_batch``. Each :meth:`BatchEngine.step` builds a single batch holding

- the last sampled token of every generating sequence (one logits row each), and
- a prompt chunk of sequences still in prefill, within what is left of ``n_batch``, at most
  ``prefill_chunk`` tokens each, so a long newcomer never stalls the others for a whole prompt;

then calls ``llama_decode`` once and samples every sequence that has a logits row with its own
native sampler chain (``llama_sampler_sample``: grammar, penalties, top_k, typical, top_p,
min_p, temperature, ``dist(seed)``); a sequence that asked for logprobs also gets the log-softmax
of its row (:mod:`logprobs`) with each token. Plain greedy decoding (temperature 0, no grammar, no
penalties) takes the first maximum of the logits row with numpy instead: the same token the
greedy sampler picks, without copying the vocabulary into a candidate array each step.
Sequences join between steps and leave as soon as they end; the slot's KV stays so that the
next sequence sharing a prompt prefix skips that much prefill (logits do not depend on how a
prompt was split into batches, so answers do not depend on this reuse or on batch neighbours
either). A prompt with images (:mod:`vision`) is evaluated up to its last token when its
sequence is admitted, the images through llama.cpp's mtmd, and then joins the batch like any
other. A sequence that fills its slot's context shifts it as Ollama does (``shift``, on by
default): the oldest half of what follows the first ``num_keep`` tokens leaves the KV cache,
the rest moves down (llama.cpp re-rotates the keys), and generation goes on.
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import llama_cpp as llama
import numpy as np  # llama-cpp-python's own dependency, loaded with it

from ollamactl.runtime.runner.logprobs import HeldLogprobs, token_entry, token_logprobs

# Longest prompt piece one sequence puts into one step while others may be decoding.
PREFILL_CHUNK = 256

# A sequence generates at most this many contexts' worth of tokens (Ollama's guard against a
# model that never stops once context shifts keep making room): num_predict -1 means this.
MAX_PREDICT_CONTEXTS = 10


class EngineError(RuntimeError):
    """The model or context could not be created, or a decode failed."""


class TextFilter(Protocol):
    """What the engine needs of a stop-sequence matcher (see ``runner.StopMatcher``)."""

    def feed(self, text: str) -> tuple[str, bool]: ...

    def flush(self) -> str: ...


@dataclass
class Sampling:
    """Per-sequence sampling options, Ollama's names and meanings."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Sampling:
        """From a request's merged options (unknown keys and None values are ignored)."""
        ints = ("top_k", "repeat_last_n", "seed")
        values: dict[str, Any] = {
            k: (int(v) if k in ints else float(v)) for k, v in options.items()
            if k in cls.__dataclass_fields__ and v is not None}
        return cls(**values)


@dataclass
class SequenceRequest:
    """One sequence to generate: prompt tokens and everything that stays per sequence."""

    id: int
    prompt: list[int]
    sampling: Sampling
    num_predict: int = -1
    stop: TextFilter | None = None
    grammar: Mapping[str, Any] | None = None
    want_context: bool = False
    num_keep: int = 4             # tokens after BOS that a context shift never drops
    shift: bool = True            # False: a full context ends the sequence ("length")
    logprobs: bool = False        # send each token's logprob (Ollama's api.Logprob) with it
    top_logprobs: int = 0         # and that many most likely alternatives
    media: Any = None             # the prompt's images (vision.PromptMedia), evaluated at admit


@dataclass
class Finished:
    """A sequence that left the engine, with Ollama's counts and durations (ns)."""

    id: int
    reason: str                   # stop | length | cancel
    prompt_n: int
    prompt_ns: int
    eval_n: int
    eval_ns: int
    context: list[int] | None
    tail: str = ""                # text held back by the stop matcher or the UTF-8 decoder
    tail_logprobs: list[dict[str, Any]] = field(default_factory=list)  # those of ``tail``


@dataclass
class StepOutput:
    """What one step produced: text per sampled token (``(id, text)``), by id the logprobs
    (Ollama's api.Logprob) that go out with that text for sequences that asked for them, and
    sequences done."""

    tokens: list[tuple[int, str]] = field(default_factory=list)
    logprobs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    finished: list[Finished] = field(default_factory=list)


@dataclass
class _Active:
    request: SequenceRequest
    slot: int
    sampler: Any                  # None: plain greedy (argmax of the logits row)
    evaluated: int                # prompt tokens already in this slot's KV cache
    started_ns: int
    decoder: codecs.IncrementalDecoder
    held: HeldLogprobs | None     # None: the sequence did not ask for logprobs
    generated: list[int] = field(default_factory=list)
    first_ns: int = 0
    next_token: int = -1          # sampled, not yet in the KV cache
    in_kv: int = 0                # tokens of prompt + generated held in the slot's KV cache
    keep: int = 0                 # leading tokens a context shift keeps
    dropped: int = 0              # tokens after ``keep`` that context shifts removed
    limit: int = 0                # most tokens to generate: num_predict, capped

    @property
    def next_pos(self) -> int:
        """KV position of the sampled token (its index in prompt + generated, less shifts)."""
        return len(self.request.prompt) + len(self.generated) - 1 - self.dropped

    def kv_tokens(self) -> list[int]:
        """The tokens the slot's KV cache holds, in position order."""
        tokens = self.request.prompt + self.generated
        if self.dropped:
            tokens = tokens[:self.keep] + tokens[self.keep + self.dropped:]
        return tokens[:self.in_kv]

    @property
    def prefilling(self) -> bool:
        return self.evaluated < len(self.request.prompt)


def device_params(params: Any, devices: Sequence[int],
                  tensor_split: Sequence[int]) -> tuple[Any, ...]:
    """Point llama_model_params at the devices to offload to (ggml handles, in order) and the
    layers per device; returns the C arrays, which must live as long as the load."""
    if not devices:
        return ()
    handles = (ctypes.c_void_p * (len(devices) + 1))(*devices, None)
    params.devices = ctypes.cast(handles, ctypes.c_void_p)
    if len(tensor_split) <= 1:
        return (handles,)
    split = (ctypes.c_float * max(len(tensor_split), int(llama.llama_max_devices())))(
        *map(float, tensor_split))
    params.tensor_split = split
    return handles, split


class BatchEngine:
    """One model, one context with ``n_parallel`` slots, and the continuous-batching loop."""

    def __init__(self, model_path: str, *, n_ctx: int, n_parallel: int = 1, n_batch: int = 512,
                 n_threads: int = 1, n_gpu_layers: int = 0, use_mmap: bool = True,
                 flash_attention: bool | None = None, devices: Sequence[int] = (),
                 tensor_split: Sequence[int] = (), adapters: Sequence[str] = ()) -> None:
        self.n_ctx = n_ctx
        self.n_parallel = max(1, n_parallel)
        self.n_batch = max(self.n_parallel, n_batch)
        self.prefill_chunk = max(1, min(PREFILL_CHUNK, self.n_batch))
        self.model: Any = None
        self.ctx: Any = None
        self.batch: Any = None
        from llama_cpp._logger import set_verbose

        set_verbose(False)                  # llama.cpp's own log: errors only, on stderr
        llama.llama_backend_init()
        params = llama.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.use_mmap = use_mmap
        self._device_args = device_params(params, devices, tensor_split)
        self.model = llama.llama_model_load_from_file(model_path.encode(), params)
        if not self.model:
            raise EngineError(f"unable to load model: {model_path}")
        cparams = llama.llama_context_default_params()
        cparams.n_ctx = n_ctx * self.n_parallel
        cparams.n_batch = cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = self.n_parallel
        cparams.n_threads = cparams.n_threads_batch = max(1, n_threads)
        cparams.kv_unified = False          # one KV stream per slot: n_ctx cells each
        cparams.no_perf = True
        cparams.flash_attn_type = (llama.LLAMA_FLASH_ATTN_TYPE_AUTO if flash_attention is None
                                   else int(flash_attention))
        self.ctx = llama.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            self.close()
            raise EngineError("unable to create the llama context (out of memory?)")
        self.memory = llama.llama_get_memory(self.ctx)
        self.vocab = llama.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama.llama_model_n_ctx_train(self.model))
        self.batch = llama.llama_batch_init(self.n_batch, 0, 1)
        self.cached: list[list[int]] = [[] for _ in range(self.n_parallel)]
        self.free_slots = list(range(self.n_parallel))
        self.active: dict[int, _Active] = {}
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        if adapters:
            self._apply_adapters(adapters)

    def _apply_adapters(self, paths: Sequence[str]) -> None:
        """Load the LoRA adapters (GGUF) onto the model and set them on the context at full
        scale, as Ollama's runner does; llama.cpp frees them with the model."""
        loaded = []
        for path in paths:
            adapter = llama.llama_adapter_lora_init(self.model, path.encode())
            if not adapter:
                self.close()
                raise EngineError(f"unable to load the LoRA adapter {path}")
            loaded.append(adapter)
        handles = (llama.llama_adapter_lora_p_ctypes * len(loaded))(*loaded)
        scales = (ctypes.c_float * len(loaded))(*[1.0] * len(loaded))
        if llama.llama_set_adapters_lora(self.ctx, handles, len(loaded), scales) != 0:
            self.close()
            raise EngineError("unable to apply the LoRA adapters")

    # -- tokens -------------------------------------------------------------------------------

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        """Like ``Llama.tokenize``: ``special`` lets the text yield special tokens."""
        size = len(text) + 2
        while True:
            buf = (llama.llama_token * size)()
            n = llama.llama_tokenize(self.vocab, text, len(text), buf, size, add_bos, special)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def token_bos(self) -> int:
        return int(llama.llama_vocab_bos(self.vocab))

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token as generated text (special tokens render empty unless
        ``special``, as logprobs name them)."""
        cached = self._pieces.get((token, special))
        if cached is None:
            n = llama.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, special)
            cached = self._piece_buf.raw[:max(0, n)]
            self._pieces[token, special] = cached
        return cached

    # -- sequences ----------------------------------------------------------------------------

    @property
    def has_free_slot(self) -> bool:
        return bool(self.free_slots)

    @property
    def busy(self) -> bool:
        return bool(self.active)

    def admit(self, request: SequenceRequest) -> None:
        """Give ``request`` a slot: the free slot whose KV cache shares the longest prefix with
        its prompt, the lowest such slot on a tie (busy slots then stay consecutive, which
        keeps a step in one pass, see :meth:`step`); the rest of that slot's cache is dropped
        (``seq_rm``).

        Raises:
            EngineError: no free slot (the caller admits only while ``has_free_slot``).
            GrammarError: the grammar does not compile.
        """
        if not self.free_slots:
            raise EngineError("no free slot")
        prompt = request.prompt
        best, best_len = self.free_slots[0], -1
        for slot in sorted(self.free_slots):
            common = _common_prefix(self.cached[slot], prompt)
            if common > best_len:
                best, best_len = slot, common
        keep = min(best_len, len(prompt) - 1)   # the last prompt token is always evaluated
        started = time.perf_counter_ns()
        if request.media is not None:
            keep = request.media.reusable(keep)
        sampler = self._sampler(request, prompt)
        self.free_slots.remove(best)
        llama.llama_memory_seq_rm(self.memory, best, keep, -1)
        self.cached[best] = prompt[:keep]
        if request.media is not None:
            keep = self._prefill_media(request, best, keep, sampler)
        bos = 1 if prompt and prompt[0] == self.token_bos() else 0
        cap = MAX_PREDICT_CONTEXTS * self.n_ctx
        self.active[request.id] = _Active(
            request=request, slot=best, sampler=sampler, evaluated=keep, in_kv=keep,
            keep=min(len(prompt) if request.num_keep < 0 else request.num_keep + bos,
                     self.n_ctx - 1),
            limit=cap if request.num_predict < 0 else min(request.num_predict, cap),
            started_ns=started,
            decoder=codecs.getincrementaldecoder("utf-8")("replace"),
            held=HeldLogprobs() if request.logprobs else None)

    def _prefill_media(self, request: SequenceRequest, slot: int, start: int,
                       sampler: Any) -> int:
        """Evaluate a prompt with images into ``slot`` up to its last token (see
        :mod:`vision`) before the sequence joins the batch; the slot is given back when
        that fails. Returns the prompt tokens now in the KV cache."""
        end = len(request.prompt) - 1
        try:
            request.media.evaluate(self.ctx, slot, request.prompt, start, end)
        except BaseException:
            if sampler is not None:
                llama.llama_sampler_free(sampler)
            self.free_slots.append(slot)
            raise
        return end

    def cancel(self, seq_id: int) -> Finished | None:
        """End a sequence now (client gone); its slot is free before the next step."""
        active = self.active.get(seq_id)
        return self._finish(active, "cancel") if active is not None else None

    def step(self) -> StepOutput:
        """One decode over every active sequence; sample those that have a logits row."""
        out = StepOutput()
        if not self.active:
            return out
        batch = self.batch
        rows: list[tuple[_Active, int]] = []
        n = 0
        # Tokens go in slot order: llama.cpp splits a batch over per-slot KV streams into
        # ubatches of consecutive slot ids taken in batch order, so any other order costs
        # extra passes over the weights in the same step.
        ordered = sorted(self.active.values(), key=lambda s: s.slot)
        room = self.n_batch - sum(1 for seq in ordered if not seq.prefilling)
        for seq in ordered:
            if not seq.prefilling:
                pos = seq.next_pos
                self._put(n, seq.next_token, pos, seq.slot, True)
                seq.in_kv = pos + 1
                rows.append((seq, n))
                n += 1
                continue
            prompt = seq.request.prompt
            take = min(self.prefill_chunk, room, len(prompt) - seq.evaluated)
            room -= take
            for pos in range(seq.evaluated, seq.evaluated + take):
                last = pos == len(prompt) - 1
                self._put(n, prompt[pos], pos, seq.slot, last)
                if last:
                    rows.append((seq, n))
                n += 1
            seq.evaluated += take
            seq.in_kv = seq.evaluated
        batch.n_tokens = n
        rc = llama.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama_decode failed ({rc})")
        for seq, row in rows:
            if seq.sampler is None:
                token = self._argmax(row)
            else:
                token = int(llama.llama_sampler_sample(seq.sampler, self.ctx, row))
            self._accept(seq, token, row, out)
        return out

    def _argmax(self, row: int) -> int:
        """The greedy token of a batch row: its first maximum logit, as llama.cpp's greedy."""
        return int(self._logits(row).argmax())

    def _logits(self, row: int) -> Any:
        """A batch row's logits as a numpy view (valid until the next decode)."""
        logits = llama.llama_get_logits_ith(self.ctx, row)
        if not logits:
            raise EngineError(f"no logits for batch row {row}")
        return np.ctypeslib.as_array(logits, shape=(self.n_vocab,))

    def _logprob(self, token: int, row: int, top_n: int) -> dict[str, Any]:
        """Ollama's api.Logprob of a sampled token: its logprob and the ``top_n`` most likely
        tokens of the row it was sampled from."""
        value, top = token_logprobs(self._logits(row), token, top_n)
        entry = token_entry(self.piece(token, True), value)
        if top:
            entry["top_logprobs"] = [token_entry(self.piece(i, True), lp) for i, lp in top]
        return entry

    def _put(self, i: int, token: int, pos: int, slot: int, logits: bool) -> None:
        batch = self.batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = slot
        batch.logits[i] = logits

    def _accept(self, seq: _Active, token: int, row: int, out: StepOutput) -> None:
        """Take a sampled token: end the sequence on end-of-generation (which, as in Ollama's
        runner, has no logprob), else emit its text and, when asked, the logprobs of the text
        that goes out (see :class:`~logprobs.HeldLogprobs`)."""
        request = seq.request
        if not seq.first_ns:
            seq.first_ns = time.perf_counter_ns()
        if llama.llama_vocab_is_eog(self.vocab, token):
            out.finished.append(self._finish(seq, "stop"))
            return
        seq.generated.append(token)
        seq.next_token = token
        fed = text = seq.decoder.decode(self.piece(token))
        hit = False
        if request.stop is not None:
            text, hit = request.stop.feed(text)
        out.tokens.append((request.id, text))
        if seq.held is not None and (released := seq.held.add(
                self._logprob(token, row, request.top_logprobs), fed, text, stopped=hit)):
            out.logprobs[request.id] = released
        if hit:
            out.finished.append(self._finish(seq, "stop"))
        elif seq.limit <= len(seq.generated) or \
                (seq.next_pos >= self.n_ctx and not (request.shift and self._shift(seq))):
            out.finished.append(self._finish(seq, "length"))

    def _shift(self, seq: _Active) -> bool:
        """Make room in a full slot as Ollama does: drop the oldest tokens after ``keep`` until
        half of what follows ``keep`` is free, move the rest down; False when the model's
        cache cannot shift. Called only when the slot is full (``in_kv == n_ctx``), so at
        least one token goes."""
        if seq.keep >= self.n_ctx - 1 or not llama.llama_memory_can_shift(self.memory):
            return False
        discard = max((self.n_ctx - seq.keep) // 2, 1) - (self.n_ctx - seq.in_kv)
        if not llama.llama_memory_seq_rm(self.memory, seq.slot, seq.keep, seq.keep + discard):
            return False
        llama.llama_memory_seq_add(self.memory, seq.slot, seq.keep + discard, -1, -discard)
        seq.dropped += discard
        seq.in_kv -= discard
        return True

    def _finish(self, seq: _Active, reason: str) -> Finished:
        ended = time.perf_counter_ns()
        request = seq.request
        del self.active[request.id]
        if seq.sampler is not None:
            llama.llama_sampler_free(seq.sampler)
        self.free_slots.append(seq.slot)
        self.cached[seq.slot] = seq.kv_tokens()
        tail = ""
        tail_logprobs: list[dict[str, Any]] = []
        if reason != "cancel":
            tail = (request.stop.flush() if request.stop is not None else "") + \
                seq.decoder.decode(b"", final=True)
            tail_logprobs = seq.held.flush() if seq.held is not None else []
        first = seq.first_ns or ended
        return Finished(
            id=request.id, reason=reason, prompt_n=len(request.prompt),
            prompt_ns=first - seq.started_ns, eval_n=len(seq.generated),
            eval_ns=ended - first, tail=tail, tail_logprobs=tail_logprobs,
            context=request.prompt + seq.generated if request.want_context else None)

    # -- sampling -----------------------------------------------------------------------------

    def _sampler(self, request: SequenceRequest, prompt: Sequence[int]) -> Any:
        """The sequence's own native sampler chain; None for plain greedy decoding."""
        opts = request.sampling
        penalized = bool(opts.repeat_penalty != 1.0 or opts.presence_penalty
                         or opts.frequency_penalty)
        if opts.temperature <= 0 and not request.grammar and not penalized:
            return None
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        try:
            if request.grammar:
                llama.llama_sampler_chain_add(chain, self._grammar_sampler(request.grammar))
            if penalized:
                last_n = self.n_ctx if opts.repeat_last_n < 0 else opts.repeat_last_n
                penalties = llama.llama_sampler_init_penalties(
                    self.n_vocab, last_n, opts.repeat_penalty, opts.frequency_penalty,
                    opts.presence_penalty)
                for token in prompt[-last_n:] if last_n else ():
                    llama.llama_sampler_accept(penalties, token)
                llama.llama_sampler_chain_add(chain, penalties)
            if opts.temperature <= 0:
                llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
                return chain
            for sampler in _truncations(opts):
                llama.llama_sampler_chain_add(chain, sampler)
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(opts.temperature))
            seed = opts.seed if opts.seed >= 0 else llama.LLAMA_DEFAULT_SEED
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
            return chain
        except BaseException:
            llama.llama_sampler_free(chain)
            raise

    def _grammar_sampler(self, spec: Mapping[str, Any]) -> Any:
        """The sampler for a grammar the server compiled and checked
        (:mod:`~ollamactl.runtime.prompting.grammar`); checked again here, as what llama.cpp's
        recursive parser gets must never overflow its stack.

        Raises:
            GrammarError: over the limits, or llama.cpp refused it (this sequence fails).
        """
        from ollamactl.runtime.prompting.grammar import GrammarError, check_gbnf

        text = str(spec["gbnf"])
        check_gbnf(text)
        triggers = spec.get("triggers")
        if triggers is None:
            sampler = llama.llama_sampler_init_grammar(self.vocab, text.encode(), b"root")
        else:
            c_patterns = (ctypes.c_char_p * len(triggers))(*[str(p).encode() for p in triggers])
            sampler = llama.llama_sampler_init_grammar_lazy_patterns(
                self.vocab, text.encode(), b"root", c_patterns, len(triggers),
                (llama.llama_token * 0)(), 0)
        if not sampler:
            raise GrammarError("failed to parse the grammar of the requested format")
        return sampler

    def close(self) -> None:
        for seq in list(self.active.values()):
            self._finish(seq, "cancel")
        if self.batch is not None:
            llama.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            llama.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama.llama_model_free(self.model)
            self.model = None


def _truncations(opts: Sampling) -> Iterable[Any]:
    """top_k, typical, top_p, min_p in llama.cpp's order; neutral values are left out."""
    if opts.top_k > 0:
        yield llama.llama_sampler_init_top_k(opts.top_k)
    if 0 < opts.typical_p < 1:
        yield llama.llama_sampler_init_typical(opts.typical_p, 1)
    if 0 < opts.top_p < 1:
        yield llama.llama_sampler_init_top_p(opts.top_p, 1)
    if opts.min_p > 0:
        yield llama.llama_sampler_init_min_p(opts.min_p, 1)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
