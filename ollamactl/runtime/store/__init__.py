"""The model store in Ollama's layout: model types (:mod:`models`), content-addressed blobs
(:mod:`blobs`), the manifests that name models (:mod:`manifests`), creating a model
(:mod:`create`), start-up cleaning (:mod:`prune`), pulls from a registry (:mod:`registry`),
models that ship as Python packages (:mod:`bundled`), GGUF headers (:mod:`gguf`), Modelfiles
(:mod:`modelfile`), model names (:mod:`names`) and model options (:mod:`options`).

The bottom of the runtime: it imports nothing of the other runtime packages.
"""
