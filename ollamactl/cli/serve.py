"""``ollamactl serve``: run the Ollama-compatible server in the foreground."""

from __future__ import annotations


def serve() -> None:
    """Run the server in the foreground (OLLAMA_HOST, OLLAMA_MODELS, ... from the environment)."""
    from ollamactl.runtime.server import serve as run_server

    run_server()
