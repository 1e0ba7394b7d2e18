"""The runner subprocess: holds one llama-cpp-python model and serves sequences over a pipe.

Started by the server as ``python -m ollamactl.runtime.runner.main '<json config>'`` (see
:class:`config.RunnerConfig`); it is the only place llama_cpp is imported, so a crash in native
code kills one runner, not the server. Requests arrive on stdin and replies leave on a private
copy of stdout (fd 1 itself is pointed at stderr, so native code that prints cannot corrupt the
protocol); see :mod:`~ollamactl.runtime.ipc` for frames.

Sequences carry their own id and sampling options. A generation runner serves up to
``num_parallel`` of them at once with continuous batching (:mod:`batch`, :mod:`batch_loop`);
an embedding runner serves its requests one at a time with llama-cpp-python's ``Llama``.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, BinaryIO

from ollamactl.runtime.ipc import HEADER, decode_payload, encode_frame, frame_length
from ollamactl.runtime.runner.config import SPARE_FLAG, RunnerConfig, physical_cores
from ollamactl.runtime.runner.sequences import INPUT_TOO_LONG, InputTooLong, error_frame

# Tokenized prompt segments kept per runner (LRU), each at most this long.
SEGMENT_CACHE_ENTRIES = 256
SEGMENT_CACHE_MAX_CHARS = 32 * 1024


class Runner:
    """One loaded model and the loop that serves sequences from ``requests``."""

    def __init__(self, config: RunnerConfig, out: BinaryIO) -> None:
        self.config = config
        self.out = out
        self.write_lock = threading.Lock()
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.llm: Any = None
        self.vision: Any = None       # vision.Vision: the projector, when the config names one
        self.segment_tokens: OrderedDict[tuple[str, bool, bool], tuple[int, ...]] = OrderedDict()

    def send(self, message: dict[str, Any]) -> None:
        frame = encode_frame(message)
        with self.write_lock:
            self.out.write(frame)
            self.out.flush()

    def send_all(self, messages: Sequence[dict[str, Any]]) -> None:
        """Several frames in one write (one step's tokens and endings)."""
        data = b"".join(encode_frame(message) for message in messages)
        with self.write_lock:
            self.out.write(data)
            self.out.flush()

    def load(self) -> None:
        """Load the model where the placement says; on the CPU, with the reason, when the GPU
        runtime or its devices fail (a GPU that will not start must not cost the model)."""
        cfg = self.config
        started = time.perf_counter_ns()
        devices, gpu_error = self.gpu_devices()
        layers = cfg.gpu_layers if devices else 0
        try:
            self.llm = self.open_model(layers, devices)
        except Exception as exc:
            if not layers:
                raise
            gpu_error = f"loading {layers} layers on {', '.join(cfg.gpu_devices)} failed: {exc}"
            layers, devices = 0, []
            self.llm = self.open_model(0, [])
        if cfg.projector and not cfg.embedding:
            from ollamactl.runtime.runner.vision import Vision

            self.vision = Vision(cfg.projector, self.llm.model, n_batch=self.llm.n_batch,
                                 n_threads=cfg.num_thread or physical_cores(),
                                 use_gpu=bool(layers))
        n_ctx_train, n_layer = model_facts(self.llm)
        total_layers = n_layer + 1        # the output layer counts, as in n_gpu_layers
        self.send({
            "t": "ready", "n_ctx": cfg.num_ctx, "n_ctx_train": n_ctx_train,
            "gpu_layers": min(layers, total_layers), "layers": total_layers,
            "gpu_error": gpu_error, "load_ns": time.perf_counter_ns() - started,
        })

    def gpu_devices(self) -> tuple[list[int], str]:
        """The ggml handles of the devices the placement names, and why there are none when a
        GPU was asked for ("" otherwise)."""
        cfg = self.config
        if not cfg.gpu_library or cfg.gpu_layers <= 0:
            return [], ""
        from ollamactl.runtime.builds.loader import gpu_devices, load_gpu_library

        try:
            load_gpu_library(cfg.gpu_library)
        except RuntimeError as exc:
            return [], str(exc)
        found = {device["id"]: device["_handle"] for device in gpu_devices()}
        if missing := [name for name in cfg.gpu_devices if name not in found]:
            return [], (f"the GPU runtime lists no device {', '.join(missing)} (it has "
                        f"{', '.join(found) or 'none'})")
        return [found[name] for name in cfg.gpu_devices], ""

    def open_model(self, layers: int, devices: Sequence[int]) -> Any:
        """The engine (generation) or llama-cpp-python's Llama (embeddings), ``layers`` of the
        model on ``devices``."""
        cfg = self.config
        threads = cfg.num_thread or physical_cores()
        if not cfg.embedding:
            from ollamactl.runtime.runner.batch import BatchEngine

            return BatchEngine(
                cfg.model_path, n_ctx=cfg.num_ctx, n_parallel=cfg.num_parallel,
                n_batch=cfg.num_batch, n_threads=threads, n_gpu_layers=layers,
                use_mmap=cfg.use_mmap, flash_attention=cfg.flash_attention,
                devices=devices, tensor_split=cfg.tensor_split if devices else (),
                adapters=cfg.adapters)
        import llama_cpp

        return llama_cpp.Llama(
            model_path=cfg.model_path, n_ctx=cfg.num_ctx * cfg.num_parallel,
            n_batch=cfg.num_batch, n_threads=threads, n_gpu_layers=layers,
            use_mmap=cfg.use_mmap, flash_attn=bool(cfg.flash_attention), embedding=True,
            lora_path=cfg.adapters[0] if cfg.adapters else None,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, verbose=False)

    def read_requests(self, stream: BinaryIO) -> None:
        """Reader thread: queue sequences, note cancellations; EOF ends the runner."""
        try:
            while True:
                header = stream.read(HEADER.size)
                if len(header) < HEADER.size:
                    break
                payload = stream.read(frame_length(header))
                message = decode_payload(payload)
                if message.get("t") == "cancel":
                    self.cancelled.add(int(message["id"]))
                elif message.get("t") in ("gen", "embed"):
                    self.requests.put(message)
        finally:
            self.requests.put(None)

    def serve(self) -> None:
        if not self.config.embedding:
            from ollamactl.runtime.runner.batch_loop import serve_batched

            serve_batched(self, self.llm)
            return
        while (request := self.requests.get()) is not None:
            seq_id = int(request["id"])
            if seq_id in self.cancelled:
                self.cancelled.discard(seq_id)
                self.send({"t": "done", "id": seq_id, "reason": "cancel"})
                continue
            try:
                if request.get("t") != "embed":
                    raise ValueError("an embedding model cannot generate text")
                self.run_embed(seq_id, request)
            except Exception as exc:  # one bad request must not end the runner
                self.send(error_frame(seq_id, exc))
            finally:
                self.cancelled.discard(seq_id)

    def tokenize(self, segments: Sequence[Sequence[Any]], context: Sequence[int]) -> list[int]:
        """Tokens of the prompt; only template text (parse_special) may yield special tokens."""
        tokens = list(context)
        for text, parse_special in segments:
            if not text:
                continue
            tokens += self._tokenize_segment(str(text), not tokens, bool(parse_special))
        bos = self.llm.token_bos()
        while len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            del tokens[0]
        if not tokens:
            tokens = [bos]
        return tokens

    def _tokenize_segment(self, text: str, add_bos: bool, special: bool) -> tuple[int, ...]:
        """Tokens of one prompt segment, remembered: a conversation resends its earlier turns
        and its system prompt with every request, and tokenizing is on the time to first token."""
        key = (text, add_bos, special)
        tokens = self.segment_tokens.get(key)
        if tokens is None:
            tokens = tuple(self.llm.tokenize(text.encode(), add_bos=add_bos, special=special))
            if len(text) <= SEGMENT_CACHE_MAX_CHARS:
                if len(self.segment_tokens) >= SEGMENT_CACHE_ENTRIES:
                    self.segment_tokens.popitem(last=False)
                self.segment_tokens[key] = tokens
        else:
            self.segment_tokens.move_to_end(key)
        return tokens

    def fit_context(self, tokens: list[int], num_keep: int, truncate: bool = True) -> list[int]:
        """Drop prompt tokens after the first ``num_keep`` (after BOS) so that generation has
        room, as Ollama does; with ``truncate`` false a prompt that does not fit is refused.

        Raises:
            InputTooLong: the prompt does not fit and ``truncate`` is false.
        """
        room = self.config.num_ctx - 1
        if len(tokens) <= room:
            return tokens
        if not truncate:
            raise InputTooLong(INPUT_TOO_LONG)
        bos = 1 if tokens[0] == self.llm.token_bos() else 0
        keep = room // 2 if num_keep < 0 else max(0, min(num_keep + bos, room // 2))
        return tokens[:keep] + tokens[len(tokens) - (room - keep):]

    def run_embed(self, seq_id: int, request: dict[str, Any]) -> None:
        from ollamactl.runtime.runner.embedding import embed_in_runner

        self.send({"t": "emb", "id": seq_id,
                   **embed_in_runner(self.llm, request["inputs"], num_ctx=self.config.num_ctx,
                                     truncate=bool(request.get("truncate", True)))})


def model_facts(llm: Any) -> tuple[int, int]:
    """The model's training context and layer count, from the engine or a ``Llama``."""
    import llama_cpp

    model = llm._model.model if hasattr(llm, "_model") else llm.model
    return int(llama_cpp.llama_model_n_ctx_train(model)), int(llama_cpp.llama_model_n_layer(model))


def main(argv: Sequence[str]) -> int:
    """Entry point: protocol on a private dup of stdout, stdout itself redirected to stderr.

    ``argv``: the config as JSON, or ``--spare``: a runner started before it is needed, which
    imports llama.cpp first and then waits for its config as the first frame on stdin (the
    server's first load then skips the interpreter's start; the CPU library is registered
    only then, so a server that loads no model logs nothing of it)."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    stdin = os.fdopen(os.dup(0), "rb")
    spare = list(argv[:1]) == [SPARE_FLAG]
    if spare:
        import llama_cpp  # noqa: F401  (the slow part of a runner's start: numpy, ctypes, libllama)

        header = stdin.read(HEADER.size)
        if len(header) < HEADER.size:
            return 0                  # never used: the server stopped or let it go
        frame = decode_payload(stdin.read(frame_length(header)))
        os.environ.update(frame.get("env") or {})      # the CPU library the server chose
        config = RunnerConfig.from_json(frame["config"])
    else:
        config = RunnerConfig.from_json(argv[0])
    runner = Runner(config, out)
    try:
        from ollamactl.runtime.builds.loader import load_cpu_library

        load_cpu_library()   # the server's choice; ggml logs "load_backend: loaded CPU backend"
        runner.load()
    except Exception as exc:
        runner.send({"t": "fatal", "msg": f"{type(exc).__name__}: {exc}"})
        return 1
    reader = threading.Thread(target=runner.read_requests, args=(stdin,), daemon=True)
    reader.start()
    runner.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
