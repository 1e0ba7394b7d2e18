"""Images in a prompt, through llama.cpp's multimodal library (mtmd) and the model's projector.

Runner process only (imports llama_cpp). :class:`Vision` holds the mtmd context made from the
projector GGUF (Ollama's ``projector`` layer) and the engine's text model. A prompt refers to
its images with Ollama's ``[img-N]`` tags, which the server writes into the user text;
:meth:`Vision.prompt` cuts the prompt's segments at those tags, tokenizes the text as the runner
always does, and has mtmd turn each image into its chunks (the projector's own begin/end tokens,
if any, and the image embeddings). Each image token gets a placeholder id in the prompt: a
negative number from the image's SHA-256, so that no vocabulary token and no other image
matches it, while the same image at the same place does (the engine's prefix reuse then keeps
its KV).

The engine evaluates a prompt with images before the sequence joins the batch
(:meth:`PromptMedia.evaluate`): text runs by ``llama_decode``, images by
``mtmd_helper_eval_chunk_single`` (which encodes the image and decodes its embeddings, with
non-causal attention where the model wants it), all into the sequence's slot; the last prompt
token is left to the batch, which samples from it as for any prompt. That step blocks the other
sequences for as long as the image takes, which is the price of keeping text-only batches as
they are.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as llama
import llama_cpp.mtmd_cpp as mtmd

from ollamactl.runtime.runner.sequences import Refused

# Ollama's tag for the Nth image of a request, written into the prompt by the server.
IMAGE_TAG = re.compile(r"\[img-(\d+)\]")
GGML_LOG_LEVEL_ERROR = 4

Tokenize = Callable[[Sequence[Sequence[Any]], Sequence[int]], list[int]]


class VisionError(RuntimeError):
    """The projector could not be loaded, or an image could not be read or evaluated."""


class UnreadableImage(VisionError, Refused):
    """An image the projector cannot read, or a prompt that ends with one: the request's
    fault, a 400 (a model or runner failure stays a 500)."""


@dataclass
class _Image:
    start: int                    # first prompt position of the image's tokens
    end: int                      # one past its last
    chunk: Any                    # the mtmd image chunk (owned by ``PromptMedia.chunks``)


@dataclass
class PromptMedia:
    """The images of one prompt: where their tokens are and the mtmd chunks that make them."""

    vision: Vision
    images: list[_Image] = field(default_factory=list)
    chunks: list[Any] = field(default_factory=list)   # mtmd_input_chunks to free

    def reusable(self, keep: int) -> int:
        """``keep`` cached prompt tokens, less any part of an image (an image is evaluated
        whole or not at all)."""
        for image in self.images:
            if image.start < keep < image.end:
                return image.start
        return keep

    def evaluate(self, ctx: Any, slot: int, prompt: Sequence[int], start: int, end: int) -> None:
        """Put ``prompt[start:end]`` into ``slot``'s KV cache: text by ``llama_decode``,
        images through mtmd.

        Raises:
            VisionError: a decode or an image's encoding failed.
        """
        pos = start
        for image in self.images:
            if image.end <= pos:
                continue
            if image.start >= end:
                break
            self.vision.decode_text(ctx, slot, prompt, pos, image.start)
            self.vision.decode_image(ctx, slot, image)
            pos = image.end
        self.vision.decode_text(ctx, slot, prompt, pos, end)

    def close(self) -> None:
        for chunks in self.chunks:
            mtmd.mtmd_input_chunks_free(chunks)
        self.chunks.clear()
        self.images.clear()


class Vision:
    """The mtmd context of a projector over the engine's text model."""

    def __init__(self, projector: str, model: Any, *, n_batch: int, n_threads: int,
                 use_gpu: bool) -> None:
        from llama_cpp._logger import llama_log_callback

        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = max(1, n_threads)
        params.print_timings = False
        params.warmup = False
        self.batch: Any = None
        errors: list[str] = []

        @llama.llama_log_callback  # type: ignore[untyped-decorator]
        def collect(level: int, text: bytes, _: Any) -> None:
            if level == GGML_LOG_LEVEL_ERROR:
                errors.append(text.decode(errors="replace"))

        mtmd.mtmd_helper_log_set(collect, None)      # mtmd's chatter stays out of the log
        try:
            self.ctx = mtmd.mtmd_init_from_file(projector.encode(), model, params)
        finally:
            mtmd.mtmd_helper_log_set(llama_log_callback, None)   # as llama.cpp's own
        if not self.ctx:
            reason = next((e.partition("error: ")[2] for e in errors if "error: " in e), "")
            raise VisionError(f"unable to load the projector {projector}: "
                              + (reason.strip().splitlines() or ["see llama.cpp's log"])[0])
        if not mtmd.mtmd_support_vision(self.ctx):
            self.close()
            raise VisionError(f"the projector {projector} has no vision encoder")
        if mtmd.mtmd_decode_use_mrope(self.ctx):
            self.close()
            raise VisionError("projectors with M-RoPE positions are not supported")
        self.n_batch = n_batch
        self.batch = llama.llama_batch_init(n_batch, 0, 1)
        self.marker = mtmd.mtmd_default_marker()

    def prompt(self, tokenize: Tokenize, segments: Sequence[Sequence[Any]],
               images: Sequence[str], context: Sequence[int]) -> tuple[list[int], PromptMedia]:
        """The prompt's tokens, image placeholders included, and its images. A tag naming no
        image stays text, as in Ollama.

        Raises:
            VisionError: an image is not one mtmd can read, or the prompt ends with one.
        """
        media = PromptMedia(self)
        tokens = list(context)
        run: list[tuple[str, bool]] = []
        try:
            for text, parse_special in segments:
                at = 0
                for tag in IMAGE_TAG.finditer(str(text)):
                    index = int(tag.group(1))
                    if index >= len(images):
                        continue
                    run.append((str(text)[at:tag.start()], bool(parse_special)))
                    tokens = tokenize(run, tokens) if any(t for t, _ in run) else tokens
                    run = []
                    tokens += self._image(media, images[index], len(tokens))
                    at = tag.end()
                run.append((str(text)[at:], bool(parse_special)))
            if any(t for t, _ in run) or not tokens:
                tokens = tokenize(run, tokens)
            if media.images and media.images[-1].end == len(tokens):
                raise UnreadableImage("a prompt cannot end with an image")
        except BaseException:
            media.close()
            raise
        return tokens, media

    def _image(self, media: PromptMedia, image: str, at: int) -> list[int]:
        """The tokens of one image (base64) placed at prompt position ``at``: the projector's
        text around it and a placeholder per embedding; its chunks go into ``media``."""
        data = base64.b64decode(image)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.ctx, buf, len(data), False)
        if not bitmap:
            raise UnreadableImage("unable to read an image (not a format the projector "
                                  "reads?)")
        chunks = mtmd.mtmd_input_chunks_init()
        media.chunks.append(chunks)
        text = mtmd.mtmd_input_text()
        text.text, text.text_len = self.marker, len(self.marker)
        text.add_special, text.parse_special = False, True
        try:
            rc = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text),
                                    (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap), 1)
        finally:
            mtmd.mtmd_bitmap_free(bitmap)
        if rc != 0:
            raise VisionError(f"unable to tokenize an image ({rc})")
        tokens: list[int] = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens += ids[:n.value]
                continue
            n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            start = at + len(tokens)
            media.images.append(_Image(start, start + n_tokens, chunk))
            tokens += [placeholder(data)] * n_tokens
        return tokens

    def decode_text(self, ctx: Any, slot: int, prompt: Sequence[int], start: int,
                    end: int) -> None:
        """Decode ``prompt[start:end]`` (text) into ``slot`` at those positions, no logits."""
        batch = self.batch
        for first in range(start, end, self.n_batch):
            n = min(self.n_batch, end - first)
            for i in range(n):
                batch.token[i] = prompt[first + i]
                batch.pos[i] = first + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = slot
                batch.logits[i] = False
            batch.n_tokens = n
            if (rc := llama.llama_decode(ctx, batch)) != 0:
                raise VisionError(f"llama_decode failed ({rc})")

    def decode_image(self, ctx: Any, slot: int, image: _Image) -> None:
        """Encode one image and decode its embeddings into ``slot`` at its positions."""
        new_pos = llama.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunk_single(self.ctx, ctx, image.chunk, image.start, slot,
                                                self.n_batch, False, ctypes.byref(new_pos))
        if rc != 0:
            raise VisionError(f"unable to evaluate an image ({rc})")

    def close(self) -> None:
        if self.batch is not None:
            llama.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            mtmd.mtmd_free(self.ctx)
            self.ctx = None


def placeholder(image: bytes) -> int:
    """The prompt id of an image's tokens: negative (never a vocabulary token), from the
    image's SHA-256 so that only the same image matches."""
    return -1 - int.from_bytes(hashlib.sha256(image).digest()[:4], "little") // 2
