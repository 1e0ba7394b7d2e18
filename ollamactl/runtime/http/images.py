"""Images on /api/generate and /api/chat, as Ollama takes them: base64 in the JSON body, checked
as Go's ``encoding/json`` checks a ``[]byte`` (a 400 with its ``illegal base64 data at input
byte N`` otherwise), and referred to in the prompt by ``[img-N]`` tags that the runner replaces
with the image's embeddings (:mod:`~ollamactl.runtime.runner.vision`).

Tags follow Ollama's ``chatPrompt``: images are numbered across the request in order; a
message's content gets ``[img-N]`` for each of its images, in place of an ``[img]`` it
contains, else in front of it.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from typing import Any

_BASE64 = re.compile(r"[A-Za-z0-9+/]*")


class BadImage(ValueError):
    """An image that is not base64 (Ollama's 400)."""


def check_base64(images: Iterable[str]) -> None:
    """Check each image as Go decodes a ``[]byte``: standard alphabet, padded, CR and LF
    skipped.

    Raises:
        BadImage: with Go's message and the offset it would name.
    """
    for image in images:
        if not is_base64(image):
            text = image.replace("\r", "").replace("\n", "")
            raise BadImage(f"illegal base64 data at input byte {_bad_offset(text)}")


def is_base64(image: str) -> bool:
    """Whether Go's standard decoder takes ``image`` (CR and LF skipped)."""
    text = image.replace("\r", "").replace("\n", "")
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):    # ValueError: a character outside ASCII
        return False
    return len(text) % 4 == 0


def _bad_offset(text: str) -> int:
    """Where Go's decoder stops for a character outside the alphabet or an input cut short
    (the start of its last quantum); for misplaced padding, the start of that quantum (Go
    may name a byte or two further on)."""
    valid = _BASE64.match(text)
    end = valid.end() if valid else 0
    if end < len(text) and text[end] != "=":
        return end
    return end - end % 4


def tag_content(content: str, first: int, count: int) -> str:
    """``content`` with tags for images ``first`` .. ``first + count - 1``."""
    prefix = ""
    for index in range(first, first + count):
        tag = f"[img-{index}]"
        if "[img]" in content:
            content = content.replace("[img]", tag, 1)
        else:
            prefix += tag
    return prefix + content


def tag_messages(messages: Sequence[dict[str, Any]]) -> list[str]:
    """Tag each message's content for its images and take the images out (in place: the
    template renders the tags, and need not carry megabytes of base64 to its worker); returns
    every image, in the order of the tags."""
    images: list[str] = []
    for message in messages:
        own = message.pop("images", None) or []
        if own:
            message["content"] = tag_content(str(message.get("content") or ""), len(images),
                                             len(own))
            images += own
    return images
