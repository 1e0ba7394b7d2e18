"""The server's OpenAPI description: every route of the app, with the request bodies it parses.

The handlers read their JSON themselves (to answer with Ollama's exact errors) and the route
table is plain Starlette, so the document is built here from the table, with the bodies of
:mod:`schemas` (native routes) and small JSON schemas of the OpenAI fields the /v1 layer reads.
It is not served (Ollama serves none); the fuzzing tests build it from the app object.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from ollamactl.runtime.http import schemas
from ollamactl.runtime.http.binding import json_schema

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")

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
    "/v1/messages": {"type": "object", "required": ["model", "max_tokens", "messages"],
                     "properties": {
        "model": {"type": "string"}, "max_tokens": {"type": "integer"}, "messages": _MESSAGES,
        "system": {}, "stream": {"type": "boolean"}, "temperature": {"type": "number"},
        "stop_sequences": {"type": "array"}, "tools": {"type": "array"}, "tool_choice": {},
        "thinking": {}}},
    "/v1/responses": {"type": "object", "required": ["model", "input"], "properties": {
        "model": {"type": "string"}, "input": {}, "instructions": {"type": "string"},
        "stream": {"type": "boolean"}, "max_output_tokens": {"type": "integer"},
        "temperature": {"type": "number"}, "tools": {"type": "array"}, "reasoning": {},
        "text": {}}},
}
_NATIVE_BODIES: dict[tuple[str, str], type] = {
    ("/api/generate", "post"): schemas.GenerateRequest,
    ("/api/chat", "post"): schemas.ChatRequest,
    ("/api/show", "post"): schemas.ModelRequest,
    ("/api/pull", "post"): schemas.ModelRequest,
    ("/api/delete", "delete"): schemas.ModelRequest,
    ("/api/copy", "post"): schemas.CopyRequest,
    ("/api/create", "post"): schemas.CreateRequest,
    ("/api/embed", "post"): schemas.EmbedRequest,
    ("/api/embeddings", "post"): schemas.EmbeddingRequest,
}


def _paths(app: Starlette) -> dict[str, dict[str, Any]]:
    """Each route's operations: an OpenAPI path (``{model:path}`` -> ``{model}``) per method,
    with its path parameters."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        path = _PARAM.sub(r"{\1}", route.path)
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string"}} for name in _PARAM.findall(route.path)]
        for method in sorted(route.methods or ()):
            operation: dict[str, Any] = {"operationId": f"{method.lower()}_{route.name}",
                                         "responses": {"200": {"description": "OK"}}}
            if parameters:
                operation["parameters"] = parameters
            paths.setdefault(path, {})[method.lower()] = operation
    return paths


def openapi_schema(app: Starlette) -> dict[str, Any]:
    """OpenAPI 3.1 for ``app``'s routes with JSON request bodies filled in."""
    document: dict[str, Any] = {"openapi": "3.1.0",
                                "info": {"title": "ollamactl", "version": "1"},
                                "paths": _paths(app)}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            body: dict[str, Any] | None = None
            model = _NATIVE_BODIES.get((path, method))
            if model is not None:
                body = json_schema(model, document.setdefault("components", {})
                                   .setdefault("schemas", {}))
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
