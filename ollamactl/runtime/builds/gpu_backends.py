"""GPU runtimes: one extra ggml backend library per GPU API, like Ollama's ``lib/ollama/cuda_v12``.

The CPU runtime is built with ``GGML_BACKEND_DL``, so a GPU backend is a separate library
(``libggml-cuda.so``, ``libggml-hip.so``, ``libggml-vulkan.so``) that the runner loads by path
with ``ggml_backend_load``. It is built from the same pinned source as the CPU runtime
(:data:`recipe.LLAMA_CPP_PYTHON`'s ``vendor/llama.cpp``) and links ``libggml-base.so.0`` by
soname, so it shares the installed llama_cpp's ABI; only the backend target is compiled.

This module builds the runtimes :mod:`gpu_plan` chooses into the cache
(``cache_root()/gpu-<backend>-<key>/``, the library and its JSON record; a failed build leaves
its log, never a half entry) and installs them beside the CPU libraries
(``<llama_cpp>/lib/ollamactl-gpu/<backend>/``), where the /opt runtime copy carries them too.
The server asks :func:`installed_gpu_runtimes`.

``python -m ollamactl.runtime.builds.gpu_backends ensure`` (``scripts/setup.sh`` runs it);
``OLLAMACTL_GPU_RUNTIMES=vulkan`` (a comma list; ``none``) forces which backends it builds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ollamactl.errors import OllamactlError, UsageError
from ollamactl.runtime.builds import recipe
from ollamactl.runtime.builds.gpu_plan import BACKENDS, RUNTIMES_ENV, Plan, machine_plan
from ollamactl.runtime.builds.toolchains import (
    Toolchains,
    discover,
    fetch_vulkan_headers,
    header_version,
)
from ollamactl.system import Runner, SystemRunner

RECORD_NAME = "ollamactl-gpu.json"
INSTALL_DIR = "ollamactl-gpu"
GPU_RECIPE_VERSION = 1   # bump when the way we build changes without a flag changing

_BASE_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF", "-DCMAKE_BUILD_TYPE=Release",
)


# -- the recipe and the cache ---------------------------------------------------------------------

@dataclass(frozen=True)
class GpuRecipe:
    """Everything that shapes one backend library; its key names the cache entry. Paths on
    this machine (compilers, header dirs) are passed at build time and not part of it."""

    backend: str
    targets: tuple[str, ...]
    llama_cpp_python: str
    cmake_args: tuple[str, ...]
    platform: str
    recipe_version: int = GPU_RECIPE_VERSION

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def entry_name(self) -> str:
        return f"gpu-{self.backend}-{self.key}"

    @property
    def library_name(self) -> str:
        return f"libggml-{self.backend}.so"


def recipe_for(backend: str, targets: Sequence[str]) -> GpuRecipe:
    flags = {"cuda": ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(targets)}"],
             "hip": ["-DGGML_HIP=ON", f"-DAMDGPU_TARGETS={';'.join(targets)}"],
             "vulkan": ["-DGGML_VULKAN=ON"]}[backend]
    return GpuRecipe(backend, tuple(targets), recipe.LLAMA_CPP_PYTHON,
                     (*_BASE_CMAKE_ARGS, *flags), sysconfig.get_platform())


def machine_args(gpu_recipe: GpuRecipe, tools: Toolchains,
                 vulkan_prefix: Path | None = None) -> tuple[str, ...]:
    """The compiler and header paths of this machine for ``gpu_recipe``."""
    if gpu_recipe.backend == "cuda":
        cuda = tools.cuda
        args = [f"-DCMAKE_CUDA_COMPILER={cuda.nvcc}"]
        if cuda.origin == "pip":      # NVIDIA's wheels: one folder per component
            args += [f"-DCUDAToolkit_ROOT={Path(cuda.nvcc).parent.parent}",
                     f"-DCMAKE_CUDA_FLAGS={' '.join('-I' + d for d in cuda.include_dirs)}",
                     f"-DCMAKE_LIBRARY_PATH={';'.join(cuda.library_dirs)}"]
        return tuple(args)
    if gpu_recipe.backend == "hip":
        return (f"-DCMAKE_HIP_COMPILER={tools.rocm.hip_compiler}",
                f"-DCMAKE_PREFIX_PATH={tools.rocm.path}")
    if vulkan_prefix is None:
        return ()
    return (f"-DVulkan_INCLUDE_DIR={vulkan_prefix / 'include'}",
            f"-DCMAKE_PREFIX_PATH={vulkan_prefix}")


def _toolkit_version(backend: str, tools: Toolchains, vulkan_prefix: Path | None) -> str:
    if backend == "cuda":
        return f"CUDA {tools.cuda.version}"
    if backend == "hip":
        return f"ROCm {tools.rocm.version}"
    version = tools.vulkan.header_version
    if vulkan_prefix is not None:
        version = header_version(vulkan_prefix / "include")
    return "Vulkan headers " + (".".join(map(str, version)) if version else "unknown")


class CompileStep(Protocol):
    """Runs one long build command with its output logged (:func:`recipe.compile_logged`)."""

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path,
                 what: str) -> None: ...


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    record: Mapping[str, Any]

    @property
    def library(self) -> Path:
        return self.path / f"libggml-{self.record.get('backend')}.so"


def cached_entries(cache: Path | None = None) -> list[CacheEntry]:
    """The GPU runtimes in the cache whose record reads; newest build first."""
    cache = cache or recipe.cache_root()
    entries = []
    for path in sorted(cache.glob("gpu-*")):
        record = _read_record(path / RECORD_NAME)
        if path.is_dir() and record is not None:
            entries.append(CacheEntry(path, record))
    return sorted(entries, key=lambda e: str(e.record.get("built_at", "")), reverse=True)


def build_runtime(gpu_recipe: GpuRecipe, tools: Toolchains, *, runner: Runner,
                  cache: Path | None = None, source: Path | None = None,
                  compile_step: CompileStep = recipe.compile_logged,
                  jobs: int | None = None) -> CacheEntry:
    """Build ``gpu_recipe``'s library into the cache from the pinned source (``source``: an
    extracted sdist; default: download it), in a staging folder renamed when complete.

    Raises:
        OllamactlError: a toolchain is missing or the build failed (the log stays).
    """
    if not tools.cmake:
        raise OllamactlError("no cmake to build the GPU runtime with",
                             hint="apt-get install cmake, or pip install cmake into this "
                                  "environment")
    cache = cache or recipe.cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / gpu_recipe.entry_name
    log_path = cache / f"{gpu_recipe.entry_name}.log"
    log_path.unlink(missing_ok=True)
    vulkan_prefix = None
    if gpu_recipe.backend == "vulkan" and not tools.vulkan.system_headers_usable:
        vulkan_prefix = fetch_vulkan_headers(runner, cache)
    extra = machine_args(gpu_recipe, tools, vulkan_prefix)
    staging = cache / f".{gpu_recipe.entry_name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ollamactl-gpu-build-") as tmp:
        work = Path(tmp)
        try:
            tree = source if source is not None else recipe.fetch_source(
                gpu_recipe.llama_cpp_python, work)
        except subprocess.CalledProcessError:
            raise OllamactlError(f"could not download llama-cpp-python "
                                 f"{gpu_recipe.llama_cpp_python}'s source (pip download failed)",
                                 hint="check the network and pip's index settings") from None
        build_dir = work / "build"
        env = dict(os.environ)
        target = f"ggml-{gpu_recipe.backend}"
        try:
            compile_step([tools.cmake, "-S", str(tree / "vendor/llama.cpp"), "-B", str(build_dir),
                          *gpu_recipe.cmake_args, *extra], env=env, log_path=log_path,
                         what=f"configuring {target}")
            compile_step([tools.cmake, "--build", str(build_dir), "--target", target,
                          "-j", str(jobs or os.cpu_count() or 1)], env=env, log_path=log_path,
                         what=f"building {target}")
        except recipe.BuildFailed as exc:
            raise OllamactlError(str(exc.code).removeprefix("ERROR: "),
                                 hint=f"the log's tail is above; full log: {log_path}") from None
        built = build_dir / "bin" / gpu_recipe.library_name
        if not built.is_file():
            raise OllamactlError(f"building {target} made no {built.name}",
                                 hint=f"full log: {log_path}")
        staging.mkdir(parents=True)
        shutil.copy2(built, staging / gpu_recipe.library_name)
    record = {**asdict(gpu_recipe), "key": gpu_recipe.key,
              "toolkit": _toolkit_version(gpu_recipe.backend, tools, vulkan_prefix),
              "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "build_seconds": round(time.monotonic() - started, 1)}
    text = json.dumps(record, indent=2)
    (staging / RECORD_NAME).write_text(text + "\n")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return CacheEntry(final, json.loads(text))


# -- the environment ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuRuntime:
    """An installed GPU backend library, ready for ``ggml_backend_load``."""

    backend: str              # "cuda" | "hip" | "vulkan"
    library: Path             # the .so to ggml_backend_load
    targets: tuple[str, ...]  # ("89",) | ("gfx1100",) | ()
    record: Mapping[str, Any]


def installed_gpu_runtimes(lib_dir: Path | None = None) -> list[GpuRuntime]:
    """The GPU runtimes installed beside ``lib_dir``'s CPU libraries (default: this
    environment's llama_cpp), in the order the server prefers them; [] when none or unreadable.
    A runtime built from another llama-cpp-python than the CPU runtime's is left out: its ggml
    ABI may differ (a CPU runtime not built by ollamactl has no record to compare with)."""
    lib_dir = lib_dir or recipe.library_dir()
    if lib_dir is None:
        return []
    cpu = recipe.installed_record(lib_dir) or {}
    found = []
    for backend in BACKENDS:
        folder = lib_dir / INSTALL_DIR / backend
        record = _read_record(folder / RECORD_NAME)
        library = folder / f"libggml-{backend}.so"
        if record is None or not library.is_file():
            continue
        if cpu.get("llama_cpp_python") in (None, record.get("llama_cpp_python")):
            targets = record.get("targets")
            found.append(GpuRuntime(backend, library, tuple(map(str, targets))
                                    if isinstance(targets, list) else (), record))
    return found


def install(entry: CacheEntry, lib_dir: Path) -> Path:
    """Copy a cached runtime into ``lib_dir/ollamactl-gpu/<backend>/`` (each file replaced
    atomically: a server loading the old library keeps its mapping); returns the library."""
    folder = lib_dir / INSTALL_DIR / str(entry.record["backend"])
    folder.mkdir(parents=True, exist_ok=True)
    for source in (entry.library, entry.path / RECORD_NAME):
        temporary = folder / f".{source.name}.tmp"
        shutil.copy2(source, temporary)
        temporary.replace(folder / source.name)
    return folder / entry.library.name


def remove(name: str, *, cache: Path | None = None, lib_dir: Path | None = None) -> list[Path]:
    """Remove a backend (every cached build of it and its installed copy) or one cache entry
    by key (and the installed copy when it is that build). Returns what was removed.

    Raises:
        UsageError: ``name`` is neither a backend nor the key of a cached or installed runtime.
    """
    entries = cached_entries(cache)
    installed = installed_gpu_runtimes(lib_dir)
    if name in BACKENDS:
        doomed = [e.path for e in entries if e.record.get("backend") == name]
        doomed += [r.library.parent for r in installed if r.backend == name]
    else:
        doomed = [e.path for e in entries if e.record.get("key") == name]
        doomed += [r.library.parent for r in installed if r.record.get("key") == name]
    if not doomed:
        raise UsageError(f"no GPU runtime {name!r} (a backend: {', '.join(BACKENDS)}, or a key "
                         "from `ollamactl runtime list`)")
    for path in doomed:
        shutil.rmtree(path)
    return doomed


# -- ensure ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnsureReport:
    built: tuple[CacheEntry, ...]
    installed: tuple[Path, ...]


def ensure(plan: Plan, tools: Toolchains, *, runner: Runner, lib_dir: Path,
           cache: Path | None = None, force: bool = False) -> EnsureReport:
    """Build what ``plan`` wants and the cache lacks (everything with ``force``), then install
    each into ``lib_dir`` unless the same build is there already. Prints progress."""
    cache = cache or recipe.cache_root()
    built, installed = [], []
    for planned in plan.to_build:
        gpu_recipe = recipe_for(planned.backend, planned.targets)
        entry = next((e for e in cached_entries(cache) if e.path.name == gpu_recipe.entry_name),
                     None)
        if entry is None or force:
            shown = ",".join(planned.targets) or "any device"
            print(f">>> building the {planned.backend} runtime (llama.cpp "
                  f"{gpu_recipe.llama_cpp_python}, for {shown}); several minutes, once",
                  flush=True)
            entry = build_runtime(gpu_recipe, tools, runner=runner, cache=cache)
            built.append(entry)
            print(f">>> built in {entry.record['build_seconds']:.0f}s, kept in {entry.path}",
                  flush=True)
        current = _read_record(lib_dir / INSTALL_DIR / planned.backend / RECORD_NAME) or {}
        if current.get("key") != gpu_recipe.key or force:
            installed.append(install(entry, lib_dir))
            print(f">>> {planned.backend} runtime installed: {installed[-1]}", flush=True)
        else:
            print(f">>> {planned.backend} runtime up to date (build {gpu_recipe.key})",
                  flush=True)
        if planned.note:
            print(f"    note: {planned.note}", flush=True)
    return EnsureReport(tuple(built), tuple(installed))


def main(argv: Sequence[str]) -> int:
    """``ensure``: plan, build, install, one line per skip (``ollamactl runtime show`` learns
    the installed runtimes from :mod:`serving`'s report)."""
    command = argv[0] if argv else ""
    if command != "ensure":
        print("usage: python -m ollamactl.runtime.builds.gpu_backends ensure", file=sys.stderr)
        return 2
    lib_dir = recipe.library_dir()
    try:
        if lib_dir is None:
            raise OllamactlError("llama_cpp is not installed in this environment")
        runner = SystemRunner()
        tools = discover(runner)
        plan = machine_plan(runner, tools)
        for line in plan.lines():
            print(line, flush=True)
        if not plan.to_build and not plan.skipped:
            print("no GPU runtime wanted here (no usable GPU; "
                  f"{RUNTIMES_ENV}=vulkan forces one)", flush=True)
        ensure(plan, tools, runner=runner, lib_dir=lib_dir)
    except OllamactlError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        print(f"ERROR: {exc.message}{hint}", file=sys.stderr)
        return exc.exit_code
    return 0


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
