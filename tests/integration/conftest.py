"""The integration suites' one running server: a real `ollamactl serve` with SmolLM2 in a
fresh store, started once per test module (a module sets ``SERVER_ENV`` for its settings, and
``SERVER_STOCK``, a function of the store, for models of its own: the bundled ``smollm2:135m``
with its template, say)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.server_process import Server, serving


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    with serving(root, getattr(request.module, "SERVER_ENV", {}),
                 stock=getattr(request.module, "SERVER_STOCK", None)) as running:
        yield running
