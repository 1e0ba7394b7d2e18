"""Quantizing GGUF weights with llama.cpp's quantizer, in a child process.

The server never imports llama_cpp (a native crash would take every model down with it), and
quantizing is minutes of CPU: :func:`quantize` runs ``python -m
ollamactl.runtime.store.quantize SRC DST FTYPE``, whose :func:`main` calls
``llama_model_quantize`` and turns llama.cpp's per-tensor log lines (``[  12/ 291] ...``) into
``{"done": 12, "of": 291}`` lines on stdout; the server reads them as progress. A child that
fails or dies is one error line, and the server goes on; a server that dies takes the child
with it (its stdin, a pipe from the server, reaches EOF), as the runners do.

The types are Ollama's (its ``ParseFileType``): F32, F16, Q8_0, Q4_K_S, Q4_K_M (Q4_K), from
F16 or F32 weights only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ollamactl.errors import ModelError

# Ollama's names -> llama.cpp's llama_ftype; the order is the one Ollama's error lists.
QUANTIZE_TYPES: dict[str, int] = {"F32": 0, "F16": 1, "Q4_K_S": 14, "Q4_K_M": 15, "Q8_0": 7}
ALIASES = {"Q4_K": "Q4_K_M"}
SOURCE_TYPES = ("F16", "F32")
ONLY_FROM_FLOAT = "quantization is only supported for F16 and F32 models"
_TENSOR_LINE = re.compile(rb"\[\s*(\d+)\s*/\s*(\d+)\s*\]")
STDERR_KEPT_CHARS = 400
GGML_LOG_LEVEL_ERROR = 4   # ggml's enum: NONE, DEBUG, INFO, WARN, ERROR, CONT


class QuantizeError(ModelError):
    """The quantizer refused the file or died; the message says which."""


def parse_type(text: str) -> str:
    """Ollama's name for a requested type (case-insensitive, ``Q4_K`` is ``Q4_K_M``).

    Raises:
        ModelError: not a type Ollama quantizes to (Ollama's message).
    """
    wanted = ALIASES.get(text.upper(), text.upper())
    if wanted not in QUANTIZE_TYPES:
        raise ModelError(f"unsupported quantization type {text.upper()} - supported types "
                         f"are {', '.join(QUANTIZE_TYPES)}")
    return wanted


def quantize(source: Path, target: Path, wanted: str,
             progress: Callable[[int, int], None]) -> None:
    """Write ``source`` quantized to ``wanted`` (see :func:`parse_type`) at ``target``;
    ``progress(tensors_done, tensors)`` as llama.cpp goes.

    Raises:
        QuantizeError: the quantizer failed (its last words in the message) or was killed.
    """
    command = [sys.executable, "-I", "-m", "ollamactl.runtime.store.quantize", str(source),
               str(target), str(QUANTIZE_TYPES[wanted])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        try:
            for line in child.stdout:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    step = json.loads(line)
                    progress(int(step["done"]), int(step["of"]))
        except BaseException:   # the progress callback stopped the work: so does the child
            child.kill()
            raise
        finally:
            stderr = child.stderr.read().decode(errors="replace")
            code = child.wait()
    if code != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
        if code < 0:
            last = [f"killed by signal {-code}"]
        raise QuantizeError(f"quantizing to {wanted} failed: {last[0][:STDERR_KEPT_CHARS]}")


def main(argv: Sequence[str]) -> int:
    """The child: quantize ``argv = [SRC, DST, FTYPE]``; progress lines on stdout, the reason
    for a failure as the last line on stderr."""
    import ctypes
    import threading

    import llama_cpp

    def exit_with_the_server() -> None:   # the raw fd: a buffered read would hold a lock
        while os.read(0, 4096):              # that interpreter shutdown waits for
            pass
        os._exit(1)

    threading.Thread(target=exit_with_the_server, daemon=True).start()
    source, target, ftype = argv[0], argv[1], int(argv[2])
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # what native code prints must not mix with the progress lines
    last_error: list[str] = []

    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        match = _TENSOR_LINE.match(text or b"")
        if match:
            out.write(json.dumps({"done": int(match[1]), "of": int(match[2])}) + "\n")
        elif level == GGML_LOG_LEVEL_ERROR and text and text.strip():
            last_error[:] = [text.decode(errors="replace").strip().split(
                "failed to quantize: ", 1)[-1]]

    callback = llama_cpp.llama_log_callback(on_log)   # kept referenced while llama.cpp logs
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 0
    if llama_cpp.llama_model_quantize(source.encode(), target.encode(),
                                      ctypes.byref(params)) != 0:
        sys.stderr.write((last_error[0] if last_error else "llama.cpp could not quantize "
                          "the file") + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
