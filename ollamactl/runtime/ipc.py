"""The framed wire protocol between the server and a runner subprocess (stdlib only).

A frame is a 4-byte big-endian length followed by that many bytes of compact UTF-8 JSON.
Both directions carry one JSON object per frame with a ``t`` (type) key; requests and their
replies are matched by ``id``, so one runner can serve several sequences at once.

Server -> runner:
    {"t": "gen", "id": 7, "segments": [[text, parse_special], ...], "context": [ids] | null,
     "options": {...per-sequence sampling options...}, "want_context": bool,
     "grammar": {"gbnf": text, "triggers": [regex, ...] (lazy only)} | null,
     "logprobs": bool, "top_logprobs": 0..20, "images": [base64, ...] (only with images)}
    {"t": "embed", "id": 8, "inputs": [text, ...], "truncate": bool}
    {"t": "cancel", "id": 7}
Runner -> server:
    {"t": "ready", "n_ctx": 4096, "n_ctx_train": 8192, "load_ns": 123, "gpu_layers": 0, ...}
    {"t": "toks", "items": [[7, "text"], [9, "te", [{logprob}, ...]]]}  one decode step:
                                                 the text of each sequence's sampled token
                                                 (may be ""), and for a sequence that asked
                                                 for logprobs those (Ollama's api.Logprob)
                                                 of the text that goes out
    {"t": "done", "id": 7, "reason": "stop", "prompt_n": 9, "prompt_ns": 1, "eval_n": 8,
     "eval_ns": 2, "context": [ids] | null}
    {"t": "emb", "id": 8, "vectors": [[float, ...]], "prompt_n": 12}
    {"t": "err", "id": 7, "msg": "..."}         one request failed; the runner lives on
    {"t": "fatal", "msg": "..."}                the runner cannot go on (load failure)
"""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 * 1024 * 1024


class ProtocolError(Exception):
    """A frame that is truncated, oversized or not a JSON object."""


def encode_frame(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> dict[str, Any]:
    try:
        message = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit")
    return int(length)
