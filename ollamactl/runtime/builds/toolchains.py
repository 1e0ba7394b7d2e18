"""What this machine has to build a GPU backend library with: CUDA, ROCm, Vulkan.

Each finder returns a frozen record of facts with a one-line ``reason`` when the toolchain cannot
build (empty when it can), never an exception, so a plan can say why a GPU gets no runtime.
Files are read under ``root`` and version commands run through a :class:`Runner`, so tests
describe a machine with a fake tree and scripted answers.

Debian 12's Vulkan headers (1.3.239) are too old for the vendored ggml-vulkan; newer ones come
from Debian 13's packages, fetched with a private apt configuration (signatures checked, /etc
untouched) and kept in the cache (:func:`fetch_vulkan_headers`).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ollamactl.errors import OllamactlError
from ollamactl.gpu.support import DRIVER_MIN_MAJOR, DRIVER_MIN_MAJOR_PRE_VOLTA, parse_driver_major
from ollamactl.system import Cmd, Runner

#: The oldest Vulkan headers the pinned ggml-vulkan was built with here (1.4.309, Debian 13's);
#: older ones lack symbols it uses (``vk::LayerSettingEXT`` is missing from 1.3.239).
VULKAN_HEADERS_MIN = (1, 4, 309)
VULKAN_HEADER_SUITE = "trixie"    # the Debian suite whose libvulkan-dev is new enough
VULKAN_HEADER_PACKAGES = ("libvulkan-dev", "spirv-headers")

CUDA_PIP_HINT = ("pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-runtime-cu12 "
                 "nvidia-cublas-cu12, or the CUDA toolkit from NVIDIA's repository "
                 "(https://developer.nvidia.com/cuda-downloads)")


def version_tuple(text: str) -> tuple[int, ...]:
    """``"12.4"`` -> (12, 4); the leading numbers only."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# -- CUDA ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaToolkit:
    """An nvcc and the headers and libraries beside it."""

    nvcc: str = ""
    version: str = ""                          # "12.4", from ``nvcc --version``
    origin: str = ""                           # PATH | /usr/local/cuda | pip
    include_dirs: tuple[str, ...] = ()         # pip only: the wheels' headers
    library_dirs: tuple[str, ...] = ()         # pip only: the wheels' libraries
    reason: str = ""

    @property
    def usable(self) -> bool:
        return not self.reason

    def oldest_architecture(self) -> tuple[int, int]:
        """CUDA 13 dropped Maxwell, Pascal and Volta (compute capability < 7.5)."""
        return (7, 5) if version_tuple(self.version)[:1] >= (13,) else (5, 0)


def find_cuda(runner: Runner, *, root: Path, environ: Mapping[str, str],
              site_dirs: Sequence[Path]) -> CudaToolkit:
    """The first complete toolkit of: nvcc on PATH, /usr/local/cuda's, NVIDIA's PyPI wheels in
    ``site_dirs``; else why the first one found is not usable."""
    candidates: list[CudaToolkit] = []
    if on_path := which("nvcc", root=root, environ=environ):
        candidates.append(CudaToolkit(on_path, origin="PATH"))
    if _executable(root, "/usr/local/cuda/bin/nvcc"):
        candidates.append(CudaToolkit("/usr/local/cuda/bin/nvcc", origin="/usr/local/cuda"))
    for site in site_dirs:
        nvidia = site / "nvidia"
        parts = [nvidia / name for name in ("cuda_nvcc", "cuda_runtime", "cublas")]
        if _executable(root, str(nvidia / "cuda_nvcc/bin/nvcc")):
            candidates.append(CudaToolkit(str(nvidia / "cuda_nvcc/bin/nvcc"), origin="pip",
                                          include_dirs=tuple(str(p / "include") for p in parts),
                                          library_dirs=tuple(str(p / "lib") for p in parts[1:])))
    if not candidates:
        return CudaToolkit(reason=f"no CUDA toolkit (nvcc): {CUDA_PIP_HINT}")
    probed = [_probe_cuda(c, runner, root) for c in candidates]
    return next((c for c in probed if c.usable), probed[0])


def _probe_cuda(found: CudaToolkit, runner: Runner, root: Path) -> CudaToolkit:
    """``found`` with its version (``nvcc --version``), or with why it cannot build ggml-cuda
    (which links cuBLAS)."""
    result = runner.run(Cmd((found.nvcc, "--version"), why="the CUDA toolkit's version",
                            mutates=False, check=False, timeout_s=30))
    match = re.search(r"release (\d+\.\d+)", result.stdout)
    if not match:
        return replace(found, reason=f"`{found.nvcc} --version` did not say its CUDA release")
    found = replace(found, version=match[1])
    homes = [str(Path(d).parent) for d in found.include_dirs] if found.include_dirs else \
        list(dict.fromkeys([str(Path(found.nvcc).parent.parent), "/usr/local/cuda", "/usr"]))
    if not any(_exists(root, f"{home}/include/cublas_v2.h")
               or any(_under(root, home).glob("targets/*/include/cublas_v2.h"))
               for home in homes):
        return replace(found, reason=f"CUDA {found.version} at {found.nvcc} has no cuBLAS "
                                     f"(cublas_v2.h): install NVIDIA's libcublas-dev for it, "
                                     f"or {CUDA_PIP_HINT}")
    return found


def cuda_driver_problem(toolkit: CudaToolkit, *, driver_version: str | None,
                        cuda_driver_version: str | None,
                        compute_capabilities: Iterable[tuple[int, int]]) -> str:
    """Why code built with ``toolkit`` would not run under this driver ("" when it would):
    the driver minimums of :mod:`ollamactl.gpu.support` first, then the toolkit's CUDA
    version against the newest the driver supports (NVML's ``cuda_driver_version``)."""
    ccs = list(compute_capabilities)
    major = parse_driver_major(driver_version) if driver_version else None
    needed = DRIVER_MIN_MAJOR_PRE_VOLTA if any(cc < (7, 0) for cc in ccs) else DRIVER_MIN_MAJOR
    if major is not None and major < needed:
        return (f"driver {driver_version} is too old: CUDA GPUs need driver >= {needed}; "
                "upgrade the NVIDIA driver")
    if cuda_driver_version and version_tuple(toolkit.version)[:2] > \
            version_tuple(cuda_driver_version)[:2]:
        return (f"toolkit CUDA {toolkit.version} is newer than the driver supports (CUDA "
                f"{cuda_driver_version} from NVML's cuda_driver_version): install a toolkit "
                f"<= {cuda_driver_version} or upgrade the driver")
    return ""


# -- ROCm ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RocmToolkit:
    """A ROCm installation with the clang that compiles HIP and hipBLAS."""

    path: str = ""                 # /opt/rocm
    version: str = ""
    hip_compiler: str = ""         # <rocm>/llvm/bin/clang
    reason: str = ""

    @property
    def usable(self) -> bool:
        return not self.reason


def find_rocm(runner: Runner, *, root: Path, environ: Mapping[str, str]) -> RocmToolkit:
    """/opt/rocm, else the installation of ``hipconfig`` or ``hipcc`` on PATH."""
    rocm = "/opt/rocm" if _exists(root, "/opt/rocm") else ""
    if not rocm:
        tool = which("hipconfig", root=root, environ=environ) or which(
            "hipcc", root=root, environ=environ)
        if not tool:
            return RocmToolkit(reason="no ROCm (/opt/rocm, hipconfig): install ROCm "
                                      "(https://rocm.docs.amd.com) with hipblas-dev")
        rocm = str(Path(tool).parent.parent)
    version = _read(root, f"{rocm}/.info/version").strip()
    if not version and _executable(root, f"{rocm}/bin/hipconfig"):
        result = runner.run(Cmd((f"{rocm}/bin/hipconfig", "--version"), mutates=False,
                                check=False, timeout_s=30, why="the ROCm version"))
        version = result.stdout.strip()
    clang = f"{rocm}/llvm/bin/clang"
    if not _executable(root, clang):
        return RocmToolkit(rocm, version, reason=f"no {clang}: install ROCm's rocm-llvm")
    if not _exists(root, f"{rocm}/include/hipblas"):
        return RocmToolkit(rocm, version, clang,
                           reason=f"no hipBLAS headers in {rocm}/include: install hipblas-dev "
                                  "and rocblas-dev")
    return RocmToolkit(rocm, version, clang)


# -- Vulkan -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VulkanToolchain:
    """The Vulkan loader and drivers (to run) and the SDK pieces (to build)."""

    loader: str = ""                              # libvulkan.so.1
    drivers: tuple[str, ...] = ()                 # ICD manifests (*.json)
    dev_library: str = ""                         # libvulkan.so, to link against
    glslc: str = ""
    header_version: tuple[int, int, int] | None = None
    spirv_headers: bool = False

    @property
    def runs(self) -> bool:
        """A Vulkan device can be used here: a loader and at least one driver."""
        return bool(self.loader and self.drivers)

    @property
    def system_headers_usable(self) -> bool:
        return self.header_version is not None and self.header_version >= VULKAN_HEADERS_MIN \
            and self.spirv_headers

    @property
    def reason(self) -> str:
        """Why a Vulkan library cannot be built here ("" when it can; headers too old are
        fetched, not a reason)."""
        missing = [name for name, have in (("libvulkan-dev", self.dev_library),
                                           ("glslc", self.glslc)) if not have]
        return f"missing {' and '.join(missing)}: apt-get install {' '.join(missing)} " \
               "spirv-headers" if missing else ""


def find_vulkan(*, root: Path, environ: Mapping[str, str]) -> VulkanToolchain:
    lib_dirs = [d for pattern in ("usr/lib/*-linux-*", "lib/*-linux-*")
                for d in sorted(root.glob(pattern))]
    lib_dirs += [root / d for d in ("usr/lib64", "usr/lib", "usr/local/lib")]
    loader = next((d / "libvulkan.so.1" for d in lib_dirs if (d / "libvulkan.so.1").exists()),
                  None)
    dev = next((d / "libvulkan.so" for d in lib_dirs if (d / "libvulkan.so").exists()), None)
    drivers = tuple(str(Path("/") / p.relative_to(root)) for d in
                    ("usr/share/vulkan/icd.d", "etc/vulkan/icd.d", "usr/local/share/vulkan/icd.d")
                    for p in sorted((root / d).glob("*.json")))
    return VulkanToolchain(
        loader=str(Path("/") / loader.relative_to(root)) if loader else "", drivers=drivers,
        dev_library=str(Path("/") / dev.relative_to(root)) if dev else "",
        glslc=which("glslc", root=root, environ=environ),
        header_version=header_version(root / "usr/include"),
        spirv_headers=(root / "usr/include/spirv/unified1/spirv.hpp").is_file())


def header_version(include_dir: Path) -> tuple[int, int, int] | None:
    """The Vulkan headers' version (1.3.239) from ``vulkan/vulkan_core.h``; None without."""
    try:
        text = (include_dir / "vulkan/vulkan_core.h").read_text(errors="replace")
    except OSError:
        return None
    patch = re.search(r"#define VK_HEADER_VERSION (\d+)", text)
    api = re.search(r"#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION\(\s*\d+\s*,\s*(\d+)"
                    r"\s*,\s*(\d+)", text)
    if not patch or not api:
        return None
    return int(api[1]), int(api[2]), int(patch[1])


def cached_vulkan_headers(cache: Path) -> Path | None:
    """The newest fetched header tree in ``cache`` that is new enough (its ``usr``)."""
    found = [(header_version(d / "usr/include"), d / "usr")
             for d in cache.glob("vulkan-headers-*") if not d.name.endswith(".partial")]
    usable = sorted((v, usr) for v, usr in found if v is not None and v >= VULKAN_HEADERS_MIN)
    return usable[-1][1] if usable else None


def fetch_vulkan_headers(runner: Runner, cache: Path) -> Path:
    """Debian 13's Vulkan and SPIR-V headers, unpacked into ``cache/vulkan-headers-<version>``
    (apt with a private sources list and lists dir: nothing under /etc or /var changes; the
    packages' signatures are checked as for any apt download). Returns its ``usr``.

    Raises:
        OllamactlError: apt could not fetch them or they are still too old.
    """
    if (cached := cached_vulkan_headers(cache)) is not None:
        return cached
    staging = cache / "vulkan-headers.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "lists/partial").mkdir(parents=True)
    (staging / "dl").mkdir()
    sources = staging / "sources.list"
    sources.write_text(f"deb http://deb.debian.org/debian {VULKAN_HEADER_SUITE} main\n")
    apt = ("apt-get", "-q", "-o", f"Dir::Etc::SourceList={sources}",
           "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={staging}/lists")
    why = f"newer Vulkan headers (Debian {VULKAN_HEADER_SUITE}'s)"
    runner.run(Cmd((*apt, "update"), why=why, timeout_s=300))
    runner.run(Cmd((*apt, "download", *VULKAN_HEADER_PACKAGES), why=why, timeout_s=300,
                   cwd=str(staging / "dl")))
    for deb in sorted((staging / "dl").glob("*.deb")):
        runner.run(Cmd(("dpkg-deb", "-x", str(deb), str(staging / "root")), why=why))
    version = header_version(staging / "root/usr/include")
    if version is None or version < VULKAN_HEADERS_MIN:
        raise OllamactlError(f"the fetched Vulkan headers ({version}) are older than "
                             f"{'.'.join(map(str, VULKAN_HEADERS_MIN))}")
    final = cache / f"vulkan-headers-{'.'.join(map(str, version))}"
    shutil.rmtree(final, ignore_errors=True)
    (staging / "root").rename(final)
    shutil.rmtree(staging, ignore_errors=True)
    return final / "usr"


# -- all of them ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Toolchains:
    cuda: CudaToolkit
    rocm: RocmToolkit
    vulkan: VulkanToolchain
    cmake: str = ""     # the system's, else PyPI's in this environment ("" when neither)


def discover(runner: Runner, *, root: Path = Path("/"),
             environ: Mapping[str, str] | None = None,
             site_dirs: Sequence[Path] | None = None) -> Toolchains:
    """Every toolchain of this machine (or of the tree at ``root``)."""
    env = os.environ if environ is None else environ
    sites = site_dirs if site_dirs is not None else [Path(sysconfig.get_paths()["purelib"])]
    interpreter_bin = {"PATH": str(Path(sys.executable).parent)}
    return Toolchains(find_cuda(runner, root=root, environ=env, site_dirs=sites),
                      find_rocm(runner, root=root, environ=env),
                      find_vulkan(root=root, environ=env),
                      which("cmake", root=root, environ=env)
                      or which("cmake", root=root, environ=interpreter_bin))


def which(name: str, *, root: Path, environ: Mapping[str, str]) -> str:
    """``name``'s path on PATH, looked up under ``root``; "" when absent."""
    for directory in environ.get("PATH", "").split(os.pathsep):
        if directory and _executable(root, f"{directory}/{name}"):
            return f"{directory}/{name}"
    return ""


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _exists(root: Path, path: str) -> bool:
    return _under(root, path).exists()


def _executable(root: Path, path: str) -> bool:
    target = _under(root, path)
    return target.is_file() and os.access(target, os.X_OK)


def _read(root: Path, path: str) -> str:
    try:
        return _under(root, path).read_text(errors="replace")
    except OSError:
        return ""
