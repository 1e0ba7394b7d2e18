"""Every route of the server, in one table: path, methods, handler.

Ollama's routes (:mod:`inference`, :mod:`management`, :mod:`embeddings`) come first, then the
OpenAI-compatible ones (:mod:`openai`). The order is the matching order; a path that matches
with another method answers 405. Handlers take the request and read their own JSON, so FastAPI
adds no body parsing or validation of its own.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from ollamactl.runtime.http import embeddings, inference, management, openai


def routes(*, metrics: bool = False) -> list[BaseRoute]:
    """The route table, fresh for each app; ``metrics`` adds ``GET /metrics`` (OLLAMA_METRICS),
    kept out of the OpenAPI document as it is no Ollama route."""
    table: list[BaseRoute] = [
        APIRoute("/api/generate", inference.generate, methods=["POST"]),
        APIRoute("/api/chat", inference.chat, methods=["POST"]),
        APIRoute("/", management.root, methods=["GET", "HEAD"]),
        APIRoute("/api/version", management.version, methods=["GET", "HEAD"]),
        APIRoute("/api/tags", management.tags, methods=["GET", "HEAD"]),
        APIRoute("/api/ps", management.ps, methods=["GET"]),
        APIRoute("/api/show", management.show, methods=["POST"]),
        APIRoute("/api/copy", management.copy, methods=["POST"]),
        APIRoute("/api/delete", management.delete, methods=["DELETE"]),
        APIRoute("/api/blobs/{digest}", management.head_blob, methods=["HEAD"]),
        APIRoute("/api/blobs/{digest}", management.post_blob, methods=["POST"]),
        APIRoute("/api/create", management.create, methods=["POST"]),
        APIRoute("/api/pull", management.pull, methods=["POST"]),
        APIRoute("/api/embed", embeddings.embed, methods=["POST"]),
        APIRoute("/api/embeddings", embeddings.embeddings_legacy, methods=["POST"]),
        APIRoute("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        APIRoute("/v1/completions", openai.completions, methods=["POST"]),
        APIRoute("/v1/models", openai.list_models, methods=["GET"]),
        APIRoute("/v1/models/{model:path}", openai.show_model, methods=["GET"]),
        APIRoute("/v1/embeddings", openai.embeddings, methods=["POST"]),
    ]
    if metrics:
        from ollamactl.runtime.http.metrics import scrape

        table.append(APIRoute("/metrics", scrape, methods=["GET"], include_in_schema=False))
    return table
