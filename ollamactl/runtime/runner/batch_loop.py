"""The runner's serving loop over a :class:`batch.BatchEngine` (runner process only).

Between two decode steps the loop takes every request and cancellation the reader thread
has queued, gives waiting requests the free slots, runs one step and writes what it produced
in one go: a single ``toks`` frame with the text of every sequence's new token (and its logprob
for a sequence that asked), then a ``done``
frame per finished sequence. It blocks only while no sequence is active.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ollamactl.runtime.runner.batch import (
    BatchEngine,
    EngineError,
    Finished,
    Sampling,
    SequenceRequest,
    StepOutput,
)
from ollamactl.runtime.runner.sequences import SAMPLING_DEFAULTS, StopMatcher, error_frame

Message = dict[str, Any]


class RunnerSide(Protocol):
    """What the loop uses of ``main.Runner``."""

    requests: queue.Queue[Message | None]
    cancelled: set[int]
    vision: Any                   # vision.Vision when the model has a projector, else None

    def send_all(self, messages: Sequence[Message]) -> None: ...

    def tokenize(self, segments: Sequence[Sequence[Any]], context: Sequence[int]) -> list[int]: ...

    def fit_context(self, tokens: list[int], num_keep: int, truncate: bool = True
                    ) -> list[int]: ...


def done_message(done: Finished) -> Message:
    return {"t": "done", "id": done.id, "reason": done.reason, "prompt_n": done.prompt_n,
            "prompt_ns": done.prompt_ns, "eval_n": done.eval_n, "eval_ns": done.eval_ns,
            "context": _text_tokens(done.context)}


def _text_tokens(tokens: list[int] | None) -> list[int] | None:
    """A sequence's ``context`` without image placeholders (negative ids, see :mod:`vision`):
    as in Ollama, whose context is the text re-tokenized, an image does not carry over."""
    return None if tokens is None else [token for token in tokens if token >= 0]


def sequence_request(message: Mapping[str, Any],
                     prompt_of: Callable[[Mapping[str, Any], int], tuple[list[int], Any]]
                     ) -> SequenceRequest:
    """A wire ``gen`` request as the engine takes it (options merged over the defaults)."""
    opts = {**SAMPLING_DEFAULTS, **{k: v for k, v in (message.get("options") or {}).items()
                                    if v is not None}}
    stops = [s for s in opts["stop"] or [] if s]
    num_keep = int(opts["num_keep"])
    prompt, media = prompt_of(message, num_keep)
    return SequenceRequest(
        id=int(message["id"]), prompt=prompt, media=media,
        sampling=Sampling.from_options(opts), num_predict=int(opts["num_predict"]),
        stop=StopMatcher(stops) if stops else None, grammar=message.get("grammar"),
        want_context=bool(message.get("want_context")), num_keep=num_keep,
        shift=message.get("shift") is not False, logprobs=bool(message.get("logprobs")),
        top_logprobs=int(message.get("top_logprobs") or 0))


def serve_batched(runner: RunnerSide, engine: BatchEngine) -> None:
    """Serve until the server closes the pipe."""
    waiting: deque[Message] = deque()

    def prompt_of(message: Mapping[str, Any], num_keep: int) -> tuple[list[int], Any]:
        if message.get("images"):
            return _image_prompt(runner, message)
        tokens = runner.tokenize(message["segments"], message.get("context") or [])
        return runner.fit_context(tokens, num_keep, message.get("truncate") is not False), None

    while True:
        out: list[Message] = []
        if not _take_requests(runner, waiting, block=not engine.busy and not waiting):
            break
        if runner.cancelled:
            gone = set(runner.cancelled)
            runner.cancelled.difference_update(gone)
            for seq_id in gone:
                if (done := engine.cancel(seq_id)) is not None:
                    out.append(done_message(done))
            for message in [m for m in waiting if int(m["id"]) in gone]:
                waiting.remove(message)
                out.append({"t": "done", "id": int(message["id"]), "reason": "cancel"})
        while waiting and engine.has_free_slot:
            message = waiting.popleft()
            seq_id = int(message["id"])
            try:
                if message.get("t") != "gen":
                    raise ValueError("this model does not support embeddings")
                request = sequence_request(message, prompt_of)
                try:
                    engine.admit(request)
                finally:
                    if request.media is not None:
                        request.media.close()   # what the images left is in the KV cache
            except Exception as exc:  # one bad request must not end the runner
                out.append(error_frame(seq_id, exc))
        if engine.busy:
            try:
                step = engine.step()
            except EngineError as exc:
                for seq_id in list(engine.active):
                    engine.cancel(seq_id)
                    out.append({"t": "err", "id": seq_id, "msg": str(exc)})
            else:
                if step.tokens:
                    out.append({"t": "toks", "items": _items(step)})
                for done in step.finished:
                    if done.tail or done.tail_logprobs:
                        out.append({"t": "toks", "items": [
                            _item(done.id, done.tail, done.tail_logprobs)]})
                    out.append(done_message(done))
        if out:
            runner.send_all(out)
    if runner.vision is not None:
        runner.vision.close()
    engine.close()


def _image_prompt(runner: RunnerSide, message: Mapping[str, Any]) -> tuple[list[int], Any]:
    """The tokens and images of a prompt with images; one that does not fit is refused, as
    cutting it could cut an image.

    Raises:
        ValueError: the model has no projector.
        InputTooLong: the prompt does not fit the context.
    """
    if runner.vision is None:
        raise ValueError("this model does not support images (it has no projector)")
    tokens, media = runner.vision.prompt(runner.tokenize, message["segments"],
                                         message["images"], message.get("context") or [])
    try:
        runner.fit_context(tokens, 0, truncate=False)
    except BaseException:
        media.close()
        raise
    return tokens, media


def _items(step: StepOutput) -> Sequence[Sequence[Any]]:
    """A step's ``toks`` items (see :func:`_item`)."""
    if not step.logprobs:
        return step.tokens
    return [_item(seq_id, text, step.logprobs.get(seq_id)) for seq_id, text in step.tokens]


def _item(seq_id: int, text: str, logprobs: list[dict[str, Any]] | None) -> Sequence[Any]:
    """``[id, text]``, or ``[id, text, [logprob, ...]]`` when logprobs go out with the text."""
    return (seq_id, text, logprobs) if logprobs else (seq_id, text)


def _take_requests(runner: RunnerSide, waiting: deque[Message], *, block: bool) -> bool:
    """Move queued requests to ``waiting``; False once the reader saw the pipe close."""
    try:
        item = runner.requests.get(block=block)
        while True:
            if item is None:
                return False
            waiting.append(item)
            item = runner.requests.get_nowait()
    except queue.Empty:
        return True
