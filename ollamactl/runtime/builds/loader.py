"""Registering the chosen CPU library with ggml, in the runner process, before any model loads.

A portable build (``GGML_BACKEND_DL``) has no backend until one is loaded by path; a build
without variants has its CPU backend linked in and needs nothing. The server picks the library
(:mod:`variants`) and hands its path over in ``OLLAMACTL_CPU_LIBRARY``.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

LIBRARY_ENV = "OLLAMACTL_CPU_LIBRARY"


def _ggml() -> Any:
    """ggml's registry functions, looked up through libllama's own handle so that they are
    those of the libggml it uses (a second copy of libggml would keep a second registry)."""
    from llama_cpp import llama_cpp as bindings

    lib = bindings._lib
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    return lib


def load_cpu_library(path: str | None = None) -> str:
    """Load the CPU library ``path`` (default: ``$OLLAMACTL_CPU_LIBRARY``); return what was
    loaded ("" when the build has its CPU backend built in).

    Raises:
        RuntimeError: ggml could not load the library.
    """
    path = path if path is not None else os.environ.get(LIBRARY_ENV, "")
    if not path:
        return ""
    if not _ggml().ggml_backend_load(os.fsencode(path)):
        raise RuntimeError(f"ggml could not load the CPU library {path}")
    return path
