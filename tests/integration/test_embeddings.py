"""Embeddings from the real SmolLM2 through /api/embed, /api/embeddings and /v1/embeddings."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import pytest
import requests

from ollamactl.runtime.http.embeddings import InvalidVector, l2_normalize, shape_vector
from tests.integration.server_process import SMOLLM2, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIMENSIONS = 576  # SmolLM2-135M's embedding length


def _post(server: Server, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{server.url}{path}", json={"model": SMOLLM2, **body}, timeout=60)


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_api_embed_shapes_and_unit_norm(server: Server) -> None:
    reply = _post(server, "/api/embed", {"input": ["why is the sky blue?", "hello"]}).json()
    assert reply["model"] == SMOLLM2
    assert [len(v) for v in reply["embeddings"]] == [DIMENSIONS, DIMENSIONS]
    assert all(abs(_norm(v) - 1) < 1e-5 for v in reply["embeddings"])
    assert reply["prompt_eval_count"] > 0 and reply["total_duration"] > 0
    single = _post(server, "/api/embed", {"input": "hello"}).json()["embeddings"]
    assert len(single) == 1
    assert single[0] == pytest.approx(reply["embeddings"][1], abs=1e-5)


def test_same_vector_from_every_endpoint_up_to_normalisation(server: Server) -> None:
    text = "why is the sky blue?"
    normalised = _post(server, "/api/embed", {"input": text}).json()["embeddings"][0]
    legacy = _post(server, "/api/embeddings", {"prompt": text}).json()["embedding"]
    assert len(legacy) == DIMENSIONS
    assert abs(_norm(legacy) - 1) > 1e-3  # the legacy endpoint does not normalise
    assert l2_normalize(legacy) == pytest.approx(normalised, abs=1e-5)
    v1 = _post(server, "/v1/embeddings", {"input": [text]}).json()
    assert v1["object"] == "list" and v1["data"][0]["index"] == 0
    assert v1["data"][0]["embedding"] == pytest.approx(normalised, abs=1e-5)
    assert v1["usage"]["prompt_tokens"] > 0
    packed = _post(server, "/v1/embeddings", {"input": text, "encoding_format": "base64"}).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack(f"<{DIMENSIONS}f", raw)) == pytest.approx(normalised, abs=1e-5)


def test_dimensions_truncate_then_renormalise(server: Server) -> None:
    full = _post(server, "/api/embed", {"input": "hello"}).json()["embeddings"][0]
    short = _post(server, "/api/embed", {"input": "hello", "dimensions": 8}).json()
    assert len(short["embeddings"][0]) == 8
    assert short["embeddings"][0] == pytest.approx(l2_normalize(full[:8]), abs=1e-5)


def test_truncate_false_rejects_input_longer_than_the_context(server: Server) -> None:
    long_text = "word " * 400
    small = {"num_ctx": 256}
    refused = _post(server, "/api/embed", {"input": long_text, "truncate": False,
                                           "options": small})
    assert refused.status_code == 400
    assert refused.json() == {"error": "the input length exceeds the context length"}
    cut = _post(server, "/api/embed", {"input": long_text, "options": small})
    assert cut.status_code == 200 and len(cut.json()["embeddings"][0]) == DIMENSIONS


def test_empty_input_loads_and_bad_input_is_refused(server: Server) -> None:
    assert _post(server, "/api/embed", {"input": []}).json() == {"model": SMOLLM2,
                                                                 "embeddings": []}
    assert _post(server, "/api/embeddings", {"prompt": ""}).json() == {"embedding": []}
    bad = _post(server, "/api/embed", {"input": 42})
    assert bad.status_code == 400 and bad.json() == {"error": "invalid input type"}
    v1 = _post(server, "/v1/embeddings", {"input": []})
    assert v1.status_code == 400 and v1.json()["error"]["message"] == "invalid input"
    missing = requests.post(f"{server.url}/api/embed", json={"model": "nope", "input": "x"},
                            timeout=30)
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "nope" not found, try pulling it first'}


def test_vector_helpers_refuse_nan_and_zero() -> None:
    assert shape_vector([3.0, 4.0, 12.0], 2) == pytest.approx([0.6, 0.8])
    for bad in ([math.nan, 1.0], [0.0, 0.0]):
        with pytest.raises(InvalidVector):
            l2_normalize(bad)
