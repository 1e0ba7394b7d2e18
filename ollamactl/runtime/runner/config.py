"""How the server asks for a runner: :class:`RunnerConfig`, the load options a runner is started
with (its command line), and the thread count a runner uses by default.

Imported by both sides: the scheduler starts runners from it, the runner parses it back.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerConfig:
    """How to load the model: every field here is a runner-level option (a change reloads)."""

    model_path: str
    num_ctx: int                 # context per sequence
    num_parallel: int = 1        # sequences served at once; the context holds num_ctx x this
    num_batch: int = 512
    num_thread: int = 0          # 0 = physical cores
    num_gpu: int = -1            # layers on the GPU; -1 = all that the build can offload
    use_mmap: bool = True
    flash_attention: bool | None = None  # None = llama.cpp decides (auto)
    embedding: bool = False      # an embedding context (mean pooling); serves "embed" only

    def to_argv(self) -> list[str]:
        # -I: never import from the server's working directory or PYTHON* variables
        return [sys.executable, "-I", "-m", "ollamactl.runtime.runner.main",
                json.dumps(self.__dict__)]


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
