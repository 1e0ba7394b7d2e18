"""The runner subprocess, ``python -m ollamactl.runtime.runner.main '<json config>'``: one
llama-cpp-python model serving sequences over a pipe (:mod:`main`), the continuous-batching
engine and its loop (:mod:`batch`, :mod:`batch_loop`), images through the model's projector
(:mod:`vision`), the embedding path (:mod:`embedding`),
what both paths share (:mod:`sequences`) and the config the server starts it with
(:mod:`config`).

May import :mod:`ollamactl.runtime.builds.loader`, :mod:`ollamactl.runtime.prompting.grammar`
and :mod:`ollamactl.runtime.ipc`; never the HTTP layer, FastAPI, starlette, pydantic or
uvicorn, so a runner starts fast and a crash in it stays in it.
"""
