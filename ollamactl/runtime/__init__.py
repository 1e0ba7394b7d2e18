"""The bundled inference server: API, scheduler, runners, model store.

Packages, each importing only those below it (imports run one way, and no module imports
another that imports it back, function-level imports included):

- ``http``: the HTTP layer (Starlette): the app and its lifespan, the one route table, the
  Ollama and OpenAI routes, request limits and guards. Imports ``scheduling``, ``prompting``,
  ``store`` and, from ``runner``, only :mod:`~ollamactl.runtime.runner.config` (the load
  options a request asks a runner for).
- ``scheduling``: which runners are loaded and who may use them, the server's handle to a runner
  process, memory estimates. Imports ``runner`` (its config), ``builds`` and ``store``.
- ``prompting``: templates, prompt rendering in worker processes, tool calls, grammars. Imports
  ``store`` (types only).
- ``runner``: the runner subprocess (``python -m ollamactl.runtime.runner.main``): the batching
  engine and the embedding path. Imports :mod:`~ollamactl.runtime.builds.loader` and
  :mod:`~ollamactl.runtime.prompting.grammar` only, never the HTTP layer or a web library
  (FastAPI, starlette, pydantic, uvicorn).
- ``store``: models on disk (blobs, manifests, create, prune), registry pulls, bundled models,
  GGUF, Modelfiles, model names and options. Imports nothing of the runtime.
- ``builds``: the llama.cpp builds a runner loads; its self-test runs the engine
  (``runner``) on a bundled model (``store``).

Modules beside them: :mod:`server` (``ollamactl serve``, the app under uvicorn) and :mod:`ipc`
(the frames every subprocess speaks: a stdlib-only leaf shared by ``runner``, ``scheduling``
and ``prompting``).

Package ``__init__`` modules hold a docstring only, so importing a module loads no sibling.
Loggers keep the names the flat layout gave them (``ollamactl.runtime.scheduler``,
``ollamactl.runtime.store``, ...): a logger's name is the ``source=`` of its log lines, which
users search and doctor trusts (:data:`ollamactl.logrecords.SELF_SOURCES`).
"""
