"""How the runtime's llama.cpp is built, in one place: source version, CMake flags, CPU variants.

Never ``-march=native``: the build carries llama.cpp's CPU backend as separate variant libraries
(``GGML_BACKEND_DL``, ``GGML_CPU_ALL_VARIANTS``) and the runner loads the one that suits the CPU
it meets (see :mod:`variants`). Building all fourteen x86 variants takes half an hour on two
cores, so a build carries the baseline, AVX2 and the best this machine runs (``OLLAMACTL_CPU_
VARIANTS=all`` builds every one, for images that move between machines).

pip keys its wheel cache by name and version, never by ``CMAKE_ARGS``, so this module builds the
wheel itself with the cache off and keeps it in its own cache, keyed by everything that shapes
it; the recipe travels inside the wheel as ``llama_cpp/lib/ollamactl-build.json`` so setup,
install and doctor read the same facts.

Run as ``python -m ollamactl.runtime.builds.recipe ensure`` (``scripts/setup.sh`` does).
Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ollamactl.runtime.builds import variants as cpu_variants

LLAMA_CPP_PYTHON = "0.3.36"
RECORD_NAME = "ollamactl-build.json"
RECIPE_VERSION = 1  # bump when the way we build changes without a flag changing

_BASE_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF",             # never -march=native: the build must run where it is copied
    "-DGGML_BACKEND_DL=ON",          # backends are libraries the runner loads by path
    "-DGGML_CPU_ALL_VARIANTS=ON",    # one CPU library per instruction set (trimmed by the patch)
    "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib",  # the variant libraries beside libllama
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
)


@dataclass(frozen=True)
class Recipe:
    """Everything that shapes a build; its key names the cached wheel."""

    llama_cpp_python: str
    cmake_args: tuple[str, ...]
    variants: tuple[str, ...]       # ggml tags of the CPU variants built
    platform: str                   # the wheel's platform (linux-x86_64...): not portable across
    recipe_version: int = RECIPE_VERSION

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def record(self) -> dict[str, object]:
        return {**asdict(self), "key": self.key}


def recipe_for(cpu: cpu_variants.CpuInfo, *, everything: bool | None = None) -> Recipe:
    """The recipe for a build on (and for) this CPU."""
    if everything is None:
        everything = os.environ.get("OLLAMACTL_CPU_VARIANTS", "").strip().lower() == "all"
    tags = tuple(v.tag for v in cpu_variants.wanted_for_build(cpu, everything=everything))
    return Recipe(LLAMA_CPP_PYTHON, _BASE_CMAKE_ARGS, tags, sysconfig.get_platform())


def library_dir() -> Path | None:
    """The installed llama_cpp's library folder, found without importing llama_cpp."""
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def installed_record(lib_dir: Path | None = None) -> dict[str, object] | None:
    """The recipe the installed llama_cpp was built from; None for a build not made here."""
    lib_dir = lib_dir or library_dir()
    if lib_dir is None:
        return None
    try:
        data = json.loads((lib_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cache_root() -> Path:
    """Built runtimes, outside the repository: $OLLAMACTL_CACHE, else ~/.cache/ollamactl."""
    if explicit := os.environ.get("OLLAMACTL_CACHE"):
        return Path(explicit) / "runtimes"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ollamactl" / "runtimes"


def patch_variant_list(cmake_lists: Path, keep: Sequence[str], arch: str) -> None:
    """Leave only ``keep`` among ggml's CPU variants of ``arch`` (the list is hard-coded in
    ggml/src/CMakeLists.txt). Fails when a kept variant is not found: the pinned source moved."""
    known = {v.tag for v in cpu_variants.for_arch(arch)}
    pattern = re.compile(r"^(\s*)ggml_add_cpu_backend_variant\(([\w.]+)\b")
    found: set[str] = set()
    lines = cmake_lists.read_text().split("\n")
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if not match or match.group(2) not in known:
            continue
        found.add(match.group(2))
        if match.group(2) not in keep:
            lines[index] = f"{match.group(1)}# ollamactl: not built here: {line.strip()}"
    if missing := set(keep) - found:
        raise RuntimeError(f"{cmake_lists}: no CPU variant {', '.join(sorted(missing))}")
    cmake_lists.write_text("\n".join(lines))


def build_wheel(recipe: Recipe, out_dir: Path, *, log_path: Path) -> Path:
    """Download the pinned source, trim the variants, build the wheel with pip's cache off,
    and put the recipe inside it. Prints progress while the compiler runs."""
    python = sys.executable
    log_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ollamactl-build-") as tmp:
        work = Path(tmp)
        source = fetch_source(recipe.llama_cpp_python, work)
        patch_variant_list(source / "vendor/llama.cpp/ggml/src/CMakeLists.txt",
                           recipe.variants, cpu_variants.machine_arch())
        env = {**os.environ, "CMAKE_ARGS": " ".join(recipe.cmake_args),
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1),
               "PIP_NO_CACHE_DIR": "1"}
        env.pop("FORCE_CMAKE", None)
        wheel_dir = work / "wheel"
        compile_logged([python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-v",
                        "-w", str(wheel_dir), str(source)], env=env, log_path=log_path,
                       what="building llama-cpp-python")
        (wheel,) = wheel_dir.glob("*.whl")
        add_to_wheel(wheel, f"llama_cpp/lib/{RECORD_NAME}",
                     json.dumps(recipe.record(), indent=2).encode())
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / wheel.name
        shutil.move(str(wheel), target)
        return target


def fetch_source(version: str, work: Path) -> Path:
    """Download llama-cpp-python ``version``'s sdist (never a wheel) into ``work`` and extract
    it; returns the source tree (its ``vendor/llama.cpp`` is the llama.cpp every build of this
    version uses: the CPU wheel and the GPU backend libraries alike)."""
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          "-q", "-d", str(work / "sdist"), f"llama-cpp-python=={version}"])
    (sdist,) = (work / "sdist").glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "src", filter="data")
    (source,) = (work / "src").iterdir()
    return source


def add_to_wheel(wheel: Path, name: str, data: bytes) -> None:
    """Add a file to a built wheel, with its line in RECORD (pip checks it on install)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    with zipfile.ZipFile(wheel) as archive:
        record_name = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        record = archive.read(record_name).decode()
    rebuilt = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rebuilt, "w",
                                                        zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename not in (record_name, name):
                dst.writestr(item, src.read(item.filename))
        dst.writestr(name, data)
        lines = [ln for ln in record.split("\n") if ln and not ln.startswith(f"{name},")]
        lines.insert(len(lines) - 1, f"{name},sha256={digest},{len(data)}")
        dst.writestr(record_name, "\n".join(lines) + "\n")
    rebuilt.replace(wheel)


def ensure() -> Path:
    """Install the runtime this machine's recipe describes into this interpreter's
    environment, building the wheel first unless the cache holds it. Returns the wheel."""
    cpu = cpu_variants.detect()
    recipe = recipe_for(cpu)
    current = installed_record()
    cached = cache_root() / recipe.key
    wheels = sorted(cached.glob("*.whl"))
    if not wheels:
        print(f">>> building llama.cpp {recipe.llama_cpp_python} for this CPU "
              f"(variants: {', '.join(recipe.variants)}; no -march=native); several minutes "
              "on two cores, once", flush=True)
        started = time.monotonic()
        staging = cached.with_name(f".{recipe.key}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        wheel = build_wheel(recipe, staging, log_path=cached.with_name(f"{recipe.key}.log"))
        staging.rename(cached)
        wheels = [cached / wheel.name]
        print(f">>> built in {time.monotonic() - started:.0f}s, kept in {cached}", flush=True)
    if current is None or current.get("key") != recipe.key:
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
              "--no-cache-dir", str(wheels[-1])])
    return wheels[-1]


def _run(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=True)


_PROGRESS = re.compile(r"\[(?:(\d+)/(\d+)|\s*(\d+)%)\]")


class BuildFailed(SystemExit):
    """A compiler run failed; its message names the full log (uncaught, it exits 1 with it)."""


def compile_logged(argv: Sequence[str], *, env: Mapping[str, str], log_path: Path,
                   what: str) -> None:
    """Run one build command, its whole output appended to ``log_path``, a progress line every
    ~10 % (from ninja's ``[n/total]`` and make's ``[ nn%]``, in pip's verbose output too).

    Raises:
        BuildFailed: the command exited non-zero (the log's tail goes to stderr first).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = -1
    with log_path.open("a") as log, subprocess.Popen(
            list(argv), env=dict(env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        log.write(f"$ {' '.join(argv)}\n")
        for line in proc.stdout:
            log.write(line)
            match = _PROGRESS.search(line)
            if match and match.group(1):       # ninja: [12/340]
                done, total = int(match.group(1)), int(match.group(2))
                if done * 10 // total > shown:
                    shown = done * 10 // total
                    print(f"    compiling: {done}/{total}", flush=True)
            elif match and int(match.group(3)) // 10 > shown:     # make: [ 45%]
                shown = int(match.group(3)) // 10
                print(f"    compiling: {match.group(3)}%", flush=True)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").split("\n")[-25:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise BuildFailed(f"ERROR: {what} failed; full log: {log_path}")


def main(argv: Sequence[str]) -> int:
    command = argv[0] if argv else "show"
    if command == "ensure":
        ensure()
        return 0
    if command == "show":
        cpu = cpu_variants.detect()
        print(json.dumps({"recipe": recipe_for(cpu).record(), "installed": installed_record(),
                          "cpu": {"model": cpu.model, "arch": cpu.arch or platform.machine()}},
                         indent=2))
        return 0
    print("usage: python -m ollamactl.runtime.builds.recipe [ensure|show]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
