"""Registering backend libraries with ggml, in the runner process, before any model loads.

A portable build (``GGML_BACKEND_DL``) has no backend until one is loaded by path; a build
without variants has its CPU backend linked in and needs nothing. The server picks the CPU
library (:mod:`variants`) and hands its path over in ``OLLAMACTL_CPU_LIBRARY``; a GPU runtime
(``libggml-vulkan.so``, ``libggml-cuda.so``...) comes in the runner's config and is loaded the
same way, after which ggml lists its devices (:func:`devices`).

``python -I -m ollamactl.runtime.builds.loader devices LIBRARY...`` prints the devices the GPU
libraries give, as JSON: the server's discovery, run in a child so that a driver that crashes or
hangs while it initialises takes down a throwaway process, not the server.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

LIBRARY_ENV = "OLLAMACTL_CPU_LIBRARY"

# ggml_backend_dev_type: the kinds a GPU runtime may register
_GPU_TYPES = {1: "gpu", 2: "igpu"}


def _ggml() -> Any:
    """ggml's registry functions, looked up through libllama's own handle so that they are
    those of the libggml it uses (a second copy of libggml would keep a second registry)."""
    from llama_cpp import llama_cpp as bindings

    lib = bindings._lib
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(ctypes.c_size_t)]
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


def load_gpu_library(path: str) -> None:
    """Register a GPU runtime's backend library.

    Raises:
        RuntimeError: ggml could not load it (a missing driver library, a file built for
            another ggml); ggml's own reason is on stderr.
    """
    if not _ggml().ggml_backend_load(os.fsencode(path)):
        raise RuntimeError(f"ggml could not load the GPU library {path}")


def gpu_devices() -> list[dict[str, Any]]:
    """The GPU devices ggml has registered, in its order: id (``Vulkan0``), description,
    kind, free and total bytes. The handle travels too (``_handle``), for the model's device
    list; :func:`main` drops it."""
    lib = _ggml()
    found = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        kind = _GPU_TYPES.get(lib.ggml_backend_dev_type(device))
        if kind is None:
            continue
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        found.append({"id": lib.ggml_backend_dev_name(device).decode(errors="replace"),
                      "description": (lib.ggml_backend_dev_description(device) or b"")
                      .decode(errors="replace"),
                      "kind": kind, "free": int(free.value), "total": int(total.value),
                      "_handle": device})
    return found


def main(argv: Sequence[str]) -> int:
    """``devices LIBRARY...``: load each library, print ``{"devices": [...], "errors": [...]}``
    (a library that fails is an error line, the others still count)."""
    if not argv or argv[0] != "devices":
        print("usage: python -m ollamactl.runtime.builds.loader devices LIBRARY...",
              file=sys.stderr)
        return 2
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                    # what a driver prints must not corrupt the JSON
    errors = []
    for path in argv[1:]:
        try:
            load_gpu_library(path)
        except RuntimeError as exc:
            errors.append(str(exc))
    devices = [{k: v for k, v in d.items() if k != "_handle"} for d in gpu_devices()]
    out.write(json.dumps({"devices": devices, "errors": errors}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
