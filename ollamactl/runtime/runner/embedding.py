"""The runner's half of embeddings: raw mean-pooled vectors from an embedding ``Llama``.

The server (:mod:`ollamactl.runtime.http.embeddings`) normalises them and shapes the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ollamactl.runtime.runner.sequences import INPUT_TOO_LONG, InputTooLong


def embed_in_runner(llm: Any, inputs: Sequence[str], *, num_ctx: int,
                    truncate: bool) -> dict[str, Any]:
    """Runner side: raw mean-pooled vectors and the prompt token count.

    Raises:
        InputTooLong: an input longer than the context while ``truncate`` is false.
    """
    limit = min(num_ctx, int(llm.n_batch))
    texts: list[str] = []
    count = 0
    for text in inputs:
        tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
        if len(tokens) > limit:
            if not truncate:
                raise InputTooLong(INPUT_TOO_LONG)
            tokens = tokens[:limit]
            text = llm.detokenize(tokens).decode("utf-8", "ignore")
        count += len(tokens)
        texts.append(text)
    vectors = llm.embed(texts, normalize=False, truncate=True)
    return {"vectors": [list(map(float, v)) for v in vectors], "prompt_n": count}
