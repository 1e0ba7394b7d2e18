"""Schemathesis against the server's own OpenAPI description (/api/* and /v1/*), bounded in
examples and time: no 5xx but 503, and every request is answered within its timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from ollamactl.host import detect
from ollamactl.runtime.http.app import create_app
from ollamactl.runtime.http.openapi import openapi_schema
from ollamactl.settings import load_server_config
from tests.adversarial.conftest import Reliability, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 15
REQUEST_TIMEOUT_S = 30
UNREACHABLE = "127.0.0.1:9"  # pulls go to a closed loopback port, never to the network


@pytest.fixture(scope="session")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    models = Path(tmp_path_factory.mktemp("schema")) / "models"
    config = load_server_config({"OLLAMA_MODELS": str(models), "OLLAMA_HOST": "127.0.0.1:9"},
                                detect())
    document = openapi_schema(create_app(config))
    assert any(p.startswith("/v1/") for p in document["paths"])
    return schemathesis.openapi.from_dict(document)


def test_no_server_errors(api_schema: Any, adv_server: Server,
                          reliability: Reliability) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            if isinstance(case.body, dict) and "options" in case.body:
                case.body["options"] = {"num_predict": 1}  # the shape, not a long generation
            pulling = case.path == "/api/pull" and isinstance(case.body, dict)
            if pulling:  # never the network: a registry on a closed loopback port
                case.body["model"] = f"{UNREACHABLE}/library/{case.body.get('model', 'x')}"
                case.body.pop("name", None)
            response = case.call(base_url=adv_server.url, timeout=REQUEST_TIMEOUT_S)
            reliability.tried()
            unreachable = pulling and "cannot reach" in response.text  # Ollama: 500 too
            assert response.status_code < 500 or response.status_code == 503 or unreachable, \
                (case.method, case.path, case.body, response.text[:300])

        call()
    assert adv_server.is_alive()
