"""Every route of the server, in one table: path, methods, handler.

Ollama's routes (:mod:`inference`, :mod:`management`, :mod:`embeddings`) come first, then the
OpenAI-compatible ones (:mod:`openai`). The order is the matching order; a path that matches
with another method answers 405. Handlers take the request and read their own JSON, so the
table is plain Starlette: no framework analyses signatures or parses bodies (FastAPI did, and
cost the server ~100 ms of start-up for nothing it used).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ollamactl.runtime.http import anthropic, embeddings, inference, management, openai, responses


def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], *,
          methods: Sequence[str], include_in_schema: bool = True) -> Route:
    """A route answering exactly ``methods`` (Starlette would add HEAD to every GET: Ollama
    answers HEAD only where it says so)."""
    made = Route(path, endpoint, methods=list(methods), include_in_schema=include_in_schema)
    made.methods = set(methods)
    return made


def routes(*, metrics: bool = False) -> list[BaseRoute]:
    """The route table, fresh for each app; ``metrics`` adds ``GET /metrics`` (OLLAMA_METRICS),
    kept out of the OpenAPI document as it is no Ollama route."""
    table: list[BaseRoute] = [
        route("/api/generate", inference.generate, methods=["POST"]),
        route("/api/chat", inference.chat, methods=["POST"]),
        route("/", management.root, methods=["GET", "HEAD"]),
        route("/api/version", management.version, methods=["GET", "HEAD"]),
        route("/api/tags", management.tags, methods=["GET", "HEAD"]),
        route("/api/ps", management.ps, methods=["GET"]),
        route("/api/show", management.show, methods=["POST"]),
        route("/api/copy", management.copy, methods=["POST"]),
        route("/api/delete", management.delete, methods=["DELETE"]),
        route("/api/blobs/{digest}", management.head_blob, methods=["HEAD"]),
        route("/api/blobs/{digest}", management.post_blob, methods=["POST"]),
        route("/api/create", management.create, methods=["POST"]),
        route("/api/pull", management.pull, methods=["POST"]),
        route("/api/push", management.push, methods=["POST"]),
        route("/api/embed", embeddings.embed, methods=["POST"]),
        route("/api/embeddings", embeddings.embeddings_legacy, methods=["POST"]),
        route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        route("/v1/completions", openai.completions, methods=["POST"]),
        route("/v1/models", openai.list_models, methods=["GET"]),
        route("/v1/models/{model:path}", openai.show_model, methods=["GET"]),
        route("/v1/embeddings", openai.embeddings, methods=["POST"]),
        route("/v1/responses", responses.create_response, methods=["POST"]),
        route("/v1/messages", anthropic.messages, methods=["POST"]),
    ]
    if metrics:
        from ollamactl.runtime.http.metrics import scrape

        table.append(route("/metrics", scrape, methods=["GET"], include_in_schema=False))
    return table
