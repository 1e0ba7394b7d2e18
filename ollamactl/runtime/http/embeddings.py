"""Embeddings: `/api/embed` (L2-normalised) and legacy `/api/embeddings` (raw).

The server asks an *embedding runner* (the model loaded with mean pooling, one sequence at a
time, as Ollama runs embedding models with parallel 1) for raw vectors (its half is
:mod:`ollamactl.runtime.runner.embedding`); normalisation, ``dimensions`` and the response
shapes are done here. :func:`embed_texts` is shared with ``/v1/embeddings``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ollamactl.runtime.http.inference import prepare
from ollamactl.runtime.http.requests import ApiError, parse_request
from ollamactl.runtime.http.schemas import EmbeddingRequest, EmbedRequest
from ollamactl.runtime.scheduling.runner_client import RunnerFailed, RunnerRefused


class InvalidVector(ValueError):
    """A vector holding NaN or infinity, or of zero length; cannot be normalised."""


def l2_normalize(vector: Sequence[float]) -> list[float]:
    """``vector / |vector|``.

    Raises:
        InvalidVector: NaN/Inf components, or a zero vector.
    """
    if any(not math.isfinite(x) for x in vector):
        raise InvalidVector("embedding contains NaN or Inf values")
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0:
        raise InvalidVector("embedding has zero length")
    return [x / norm for x in vector]


def shape_vector(vector: Sequence[float], dimensions: int | None) -> list[float]:
    """Cut to ``dimensions`` (when given and shorter), then L2-normalise."""
    if dimensions:
        vector = vector[:dimensions]
    return l2_normalize(vector)


@dataclasses.dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    prompt_eval_count: int
    load_ns: int
    total_ns: int


async def embed_texts(request: Request, model_name: str, inputs: Sequence[str], *,
                      truncate: bool, options: Any, keep_alive: Any) -> Embedded:
    """Raw vectors for ``inputs`` from the model's embedding runner (loads it if needed).

    Raises:
        ApiError: 404 ``model "x" not found, try pulling it first``; 400 for bad options or
            too-long input; 500 when the runner fails.
    """
    started = time.perf_counter_ns()
    try:
        inference = await prepare(request, model_name, options, keep_alive, chat=False)
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(404, f'model "{model_name}" not found, try pulling it first') from None
        raise
    num_ctx = inference.runner_config.num_ctx
    inference.runner_config = dataclasses.replace(
        inference.runner_config, embedding=True, num_parallel=1,
        num_batch=max(num_ctx, inference.runner_config.num_batch))
    lease = await inference.acquire()
    scheduler = request.app.state.scheduler
    try:
        if not inputs:
            return Embedded([], 0, lease.load_ns, time.perf_counter_ns() - started)
        reply = await lease.loaded.process.embed(list(inputs), truncate=truncate)
    except RunnerFailed as exc:
        raise ApiError(400 if isinstance(exc, RunnerRefused) else 500, str(exc)) from None
    finally:
        scheduler.release(lease)
    if (metrics := inference.server_metrics) is not None:
        metrics.prompt_evaluated(inference.model.name.display, int(reply["prompt_n"]))
    return Embedded(reply["vectors"], int(reply["prompt_n"]), lease.load_ns,
                    time.perf_counter_ns() - started)


def _inputs(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ApiError(400, "invalid input type")


def _dimensions(value: int) -> int | None:
    if value < 0:
        raise ApiError(400, "dimensions must be a non-negative integer")
    return value or None


async def embed(request: Request) -> Response:
    req = await parse_request(request, EmbedRequest)
    name = req.model
    inputs = _inputs(req.input)
    dimensions = _dimensions(req.dimensions)
    result = await embed_texts(request, name, inputs, truncate=req.truncate is not False,
                               options=req.options, keep_alive=req.keep_alive)
    if not inputs:
        return JSONResponse({"model": name, "embeddings": []})
    try:
        vectors = [shape_vector(v, dimensions) for v in result.vectors]
    except InvalidVector as exc:
        raise ApiError(500, str(exc)) from None
    answer: dict[str, Any] = {"model": name, "embeddings": vectors,
                              "total_duration": result.total_ns,
                              "load_duration": result.load_ns,
                              "prompt_eval_count": result.prompt_eval_count}
    return JSONResponse({k: v for k, v in answer.items() if v != 0})


async def embeddings_legacy(request: Request) -> Response:
    req = await parse_request(request, EmbeddingRequest)
    result = await embed_texts(request, req.model, [req.prompt] if req.prompt else [],
                               truncate=True, options=req.options, keep_alive=req.keep_alive)
    return JSONResponse({"embedding": result.vectors[0] if result.vectors else []})
