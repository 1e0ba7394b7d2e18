"""The server's OpenAPI description: every route of the app, with the request bodies it parses.

The handlers read their JSON themselves (to answer with Ollama's exact errors), so FastAPI sees
no body models; this module adds them from :mod:`schemas` (native routes) and from small JSON
schemas of the OpenAI fields the /v1 layer reads. The document is not served (Ollama serves
none); the fuzzing tests build it from the app object.
"""

from __future__ import annotations

import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from ollamactl.runtime.http import schemas

_MESSAGES = {"type": "array", "items": {
    "type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
    "required": ["role"]}}
_OPENAI_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"type": "object", "required": ["model", "messages"], "properties": {
        "model": {"type": "string"}, "messages": _MESSAGES, "stream": {"type": "boolean"},
        "max_tokens": {"type": "integer"}, "temperature": {"type": "number"},
        "top_p": {"type": "number"}, "seed": {"type": "integer"}, "stop": {},
        "tools": {"type": "array"}, "tool_choice": {}, "response_format": {}}},
    "/v1/completions": {"type": "object", "required": ["model", "prompt"], "properties": {
        "model": {"type": "string"}, "prompt": {"type": "string"}, "stream": {"type": "boolean"},
        "max_tokens": {"type": "integer"}, "temperature": {"type": "number"},
        "suffix": {"type": "string"}, "echo": {"type": "boolean"}}},
    "/v1/embeddings": {"type": "object", "required": ["model", "input"], "properties": {
        "model": {"type": "string"}, "input": {}, "encoding_format": {"type": "string"},
        "dimensions": {"type": "integer"}}},
    "/api/embed": {"type": "object", "properties": {
        "model": {"type": "string"}, "input": {}, "truncate": {"type": "boolean"},
        "options": {"type": "object"}, "keep_alive": {}, "dimensions": {"type": "integer"}}},
    "/api/embeddings": {"type": "object", "properties": {
        "model": {"type": "string"}, "prompt": {"type": "string"},
        "options": {"type": "object"}, "keep_alive": {}}},
}
_NATIVE_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/api/generate", "post"): schemas.GenerateRequest,
    ("/api/chat", "post"): schemas.ChatRequest,
    ("/api/show", "post"): schemas.ModelRequest,
    ("/api/pull", "post"): schemas.ModelRequest,
    ("/api/delete", "delete"): schemas.ModelRequest,
    ("/api/copy", "post"): schemas.CopyRequest,
    ("/api/create", "post"): schemas.CreateRequest,
}


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """OpenAPI 3.1 for ``app``'s routes with JSON request bodies filled in."""
    with warnings.catch_warnings():  # GET+HEAD routes share one function, hence one id
        warnings.filterwarnings("ignore", message="Duplicate Operation ID")
        document = get_openapi(title="ollamactl", version="1", routes=app.routes)
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            body: dict[str, Any] | None = None
            model = _NATIVE_BODIES.get((path, method))
            if model is not None:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in body.pop("$defs", {}).items():
                    document.setdefault("components", {}).setdefault("schemas", {})[name] = \
                        definition
            elif path in _OPENAI_BODIES and method == "post":
                body = _OPENAI_BODIES[path]
            elif path.startswith("/api/blobs/") and method == "post":
                operation["requestBody"] = {"content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}}
                continue
            if body is not None:
                operation["requestBody"] = {"required": True,
                                            "content": {"application/json": {"schema": body}}}
    return document
