"""How the server asks for a runner: :class:`RunnerConfig`, the load options a runner is started
with (its command line), and the thread count a runner uses by default.

Imported by both sides: the scheduler starts runners from it, the runner parses it back.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunnerConfig:
    """How to load the model. The fields a request sets are runner-level options (a change
    reloads); the GPU fields are the scheduler's placement for this load, made anew at every
    load from the free VRAM, so they take no part in comparing configs."""

    model_path: str
    num_ctx: int                 # context per sequence
    num_parallel: int = 1        # sequences served at once; the context holds num_ctx x this
    num_batch: int = 512
    num_thread: int = 0          # 0 = physical cores
    num_gpu: int = -1            # layers on the GPU; -1 = all that the build can offload
    use_mmap: bool = True
    flash_attention: bool | None = None  # None = llama.cpp decides (auto)
    embedding: bool = False      # an embedding context (mean pooling); serves "embed" only
    adapters: tuple[str, ...] = ()   # LoRA adapter GGUFs applied at full scale; a change reloads
    projector: str = ""          # the vision projector GGUF (mtmd); a change reloads
    # the placement (see scheduling.placement): the GPU runtime's backend library, the
    # devices by ggml id (``Vulkan0``), the layers offloaded and their split across devices
    gpu_library: str = field(default="", compare=False)
    gpu_devices: tuple[str, ...] = field(default=(), compare=False)
    gpu_layers: int = field(default=0, compare=False)
    tensor_split: tuple[int, ...] = field(default=(), compare=False)

    @classmethod
    def from_json(cls, text: str) -> RunnerConfig:
        """The config :meth:`to_argv` wrote (JSON has lists where the fields hold tuples)."""
        data: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                for k, v in json.loads(text).items()}
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    def to_argv(self) -> list[str]:
        return [*RUNNER_COMMAND, self.to_json()]


# -I: never import from the server's working directory or PYTHON* variables
RUNNER_COMMAND = (sys.executable, "-I", "-m", "ollamactl.runtime.runner.main")
# a runner started ahead of its first load: it takes its config as the first frame on stdin
SPARE_FLAG = "--spare"
# how long a runner may take to end after its stdin closes (then SIGTERM, then SIGKILL)
STOP_GRACE_S = 5.0


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
