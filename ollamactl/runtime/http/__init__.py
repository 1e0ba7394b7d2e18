"""The HTTP layer: the Starlette app (:mod:`app`), its one route table (:mod:`routes`), Ollama's
routes (:mod:`inference`, :mod:`management`, :mod:`embeddings`), the OpenAI-compatible ones
(:mod:`openai`), request bodies (:mod:`schemas`), request limits and browser guards
(:mod:`limits`, :mod:`security`, raw ASGI middleware typed by :mod:`asgi`).

May import ``scheduling``, ``prompting``, ``store`` and ``runner.config``; nothing imports it
but :mod:`ollamactl.runtime.server`.
"""
