"""GPU runtimes with the OS boundary faked (a fake file tree for toolchains and sysfs, the command
recorder for version probes and apt, a compile step that records cmake's argv), never the logic:
which runtime each GPU gets, the exact cmake invocation per backend, the cache and its record,
the installed runtimes the server reads, and `ollamactl runtime list/remove`."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from ollamactl.errors import OllamactlError, UsageError
from ollamactl.gpu import NA, GpuInfo, GpuInventory, GpuProblem
from ollamactl.gpu.nvidia import NvidiaReport
from ollamactl.gpu.support import Verdict, amd_verdict, nvidia_verdict
from ollamactl.runtime.builds import gpu_backends as gb
from ollamactl.runtime.builds import gpu_plan as gp
from ollamactl.runtime.builds import recipe
from ollamactl.runtime.builds import toolchains as tc
from ollamactl.system import Cmd, RecordingRunner
from tests.conftest import Cli

CUDA = tc.CudaToolkit(nvcc="/usr/local/cuda/bin/nvcc", version="12.4", origin="/usr/local/cuda")
ROCM = tc.RocmToolkit("/opt/rocm", "6.2.0", "/opt/rocm/llvm/bin/clang")
NO_CUDA = tc.CudaToolkit(reason=f"no CUDA toolkit (nvcc): {tc.CUDA_PIP_HINT}")
NO_ROCM = tc.RocmToolkit(reason="no ROCm (/opt/rocm, hipconfig): install ROCm")
MESA = tc.VulkanToolchain(
    loader="/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
    drivers=("/usr/share/vulkan/icd.d/intel_icd.x86_64.json",
             "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json",
             "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"),
    dev_library="/usr/lib/x86_64-linux-gnu/libvulkan.so", glslc="/usr/bin/glslc",
    header_version=(1, 3, 239), spirv_headers=True)
NO_VULKAN = tc.VulkanToolchain()


def nvidia(index: int, cc: tuple[int, int], driver: str = "550.54.15",
           name: str = "NVIDIA GeForce RTX 4090") -> GpuInfo:
    return GpuInfo(vendor="nvidia", index=index, name=name, compute=f"{cc[0]}.{cc[1]}",
                   uuid=NA, driver_version=driver, vram_total_bytes=NA, vram_free_bytes=NA,
                   verdict=nvidia_verdict(name, cc, driver))


def amd(index: int, gfx: str, override: str | None = None) -> GpuInfo:
    return GpuInfo(vendor="amd", index=index, name="Radeon", compute=gfx, uuid=NA,
                   driver_version=NA, vram_total_bytes=NA, vram_free_bytes=NA,
                   verdict=amd_verdict(gfx, override=override, integrated=False,
                                       igpu_enable=None))


def inventory(*gpus: GpuInfo, cuda_driver: str = "12.4",
              problems: Sequence[GpuProblem] = ()) -> GpuInventory:
    drivers = [g.driver_version for g in gpus if g.vendor == "nvidia"]
    report = NvidiaReport(drivers[0], cuda_driver, ()) if drivers else None
    return GpuInventory(tuple(gpus), tuple(problems), nvidia=report)


def tools(cuda: tc.CudaToolkit = NO_CUDA, rocm: tc.RocmToolkit = NO_ROCM,
          vulkan: tc.VulkanToolchain = MESA) -> tc.Toolchains:
    return tc.Toolchains(cuda, rocm, vulkan, "/usr/bin/cmake")


def touch(root: Path, path: str, text: str = "", mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)
    return target


# -- the choice ---------------------------------------------------------------------------------

def test_nvidia_with_a_toolkit_gets_cuda_for_exactly_the_architectures_present() -> None:
    one = gp.plan_runtimes(inventory(nvidia(0, (8, 9))), tools(cuda=CUDA))
    assert [(r.backend, r.targets) for r in one.runtimes] == [("cuda", ("89",))]
    assert one.skipped == ()
    two = gp.plan_runtimes(inventory(nvidia(0, (8, 9)), nvidia(1, (8, 6), name="RTX 3090"),
                                     nvidia(2, (8, 9))), tools(cuda=CUDA))
    assert two.runtimes[0].targets == ("86", "89")
    assert len(two.runtimes[0].gpus) == 3
    assert gb.recipe_for("cuda", two.runtimes[0].targets).cmake_args[-1] == \
        "-DCMAKE_CUDA_ARCHITECTURES=86;89"


def test_nvidia_without_a_toolkit_gets_vulkan_with_a_note_naming_the_toolkit() -> None:
    plan = gp.plan_runtimes(inventory(nvidia(0, (8, 9))),
                            tools(vulkan=tc.VulkanToolchain(
                                **{**MESA.__dict__, "drivers": ("/etc/vulkan/icd.d/"
                                                                "nvidia_icd.json",)})))
    (runtime,) = plan.runtimes
    assert (runtime.backend, runtime.targets) == ("vulkan", ())
    assert "pip install nvidia-cuda-nvcc-cu12" in runtime.note
    # Mesa's drivers do not drive an NVIDIA card: no Vulkan for it, a skip saying why
    skipped = gp.plan_runtimes(inventory(nvidia(0, (8, 9))), tools()).skipped
    assert plan.skipped == () and len(skipped) == 1
    assert "no CUDA toolkit" in skipped[0].line() and "Vulkan driver" in skipped[0].fix


def test_a_driver_older_than_the_toolkit_is_a_clear_skip() -> None:
    newer = tc.CudaToolkit("/usr/local/bin/nvcc", "12.8", "PATH")
    plan = gp.plan_runtimes(inventory(nvidia(0, (8, 9)), cuda_driver="12.4"),
                            tools(cuda=newer))
    assert plan.runtimes == ()
    (skip,) = plan.skipped
    assert skip.reason == ("toolkit CUDA 12.8 is newer than the driver supports (CUDA 12.4 "
                           "from NVML's cuda_driver_version): install a toolkit <= 12.4 or "
                           "upgrade the driver")


def test_a_driver_below_the_minimum_is_skipped_with_the_verdicts_advice() -> None:
    plan = gp.plan_runtimes(inventory(nvidia(0, (8, 9), driver="535.104.05")),
                            tools(cuda=CUDA))
    assert plan.runtimes == ()
    assert "driver 535.104.05 is too old" in plan.skipped[0].reason
    assert "upgrade the NVIDIA driver to 550" in plan.skipped[0].fix
    assert "driver >= 570" in tc.cuda_driver_problem(
        CUDA, driver_version="560.1", cuda_driver_version="12.6", compute_capabilities=[(6, 1)])


def test_an_nvidia_gpu_whose_compute_capability_is_unknown_is_skipped_with_the_advice() -> None:
    card = GpuInfo(vendor="nvidia", index=0, name="NVIDIA X", compute="N/A", uuid=NA,
                   driver_version="550.1", vram_total_bytes=NA, vram_free_bytes=NA,
                   verdict=nvidia_verdict("NVIDIA X", None, "550.1"))
    plan = gp.plan_runtimes(inventory(card), tools(cuda=CUDA))
    assert plan.runtimes == () and "nvidia-smi --query-gpu=compute_cap" in plan.skipped[0].fix


def test_cuda_13_cannot_build_for_pascal() -> None:
    cuda13 = tc.CudaToolkit("/usr/local/bin/nvcc", "13.0", "PATH")
    plan = gp.plan_runtimes(inventory(nvidia(0, (8, 9), driver="580.1"),
                                      nvidia(1, (6, 1), driver="580.1", name="GTX 1080"),
                                      cuda_driver="13.0"), tools(cuda=cuda13))
    assert [(r.backend, r.targets) for r in plan.runtimes] == [("cuda", ("89",))]
    assert "cannot build for compute capability 6.1" in plan.skipped[0].reason


def test_amd_with_rocm_gets_hip_for_its_gfx_target() -> None:
    plan = gp.plan_runtimes(inventory(amd(0, "gfx1100")), tools(rocm=ROCM))
    assert [(r.backend, r.targets) for r in plan.runtimes] == [("hip", ("gfx1100",))]


def test_an_overridden_amd_card_builds_for_the_overrides_target() -> None:
    card = amd(0, "gfx1034", override="10.3.0")
    assert card.verdict.code == "override"
    plan = gp.plan_runtimes(inventory(card, amd(1, "gfx1100")), tools(rocm=ROCM))
    assert [(r.backend, r.targets) for r in plan.runtimes] == [("hip", ("gfx1030", "gfx1100"))]


def test_amd_without_rocm_gets_vulkan() -> None:
    plan = gp.plan_runtimes(inventory(amd(0, "gfx1100")), tools())
    (runtime,) = plan.runtimes
    assert runtime.backend == "vulkan" and "no ROCm" in runtime.note


def test_intel_from_sysfs_gets_vulkan_and_connectors_and_bmc_adapters_do_not_count(
        tmp_path: Path) -> None:
    for card, vendor, cls in (("card0", "0x8086", "0x030000"), ("card1", "0x1a03", "0x030000")):
        touch(tmp_path, f"sys/class/drm/{card}/device/vendor", vendor + "\n")
        touch(tmp_path, f"sys/class/drm/{card}/device/class", cls + "\n")
        touch(tmp_path, f"sys/class/drm/{card}/device/device", "0x56a0\n")
    (tmp_path / "sys/class/drm/card0-DP-1").mkdir()
    touch(tmp_path, "usr/lib/x86_64-linux-gnu/libvulkan.so.1")
    touch(tmp_path, "usr/lib/x86_64-linux-gnu/libvulkan.so")
    touch(tmp_path, "usr/share/vulkan/icd.d/intel_icd.x86_64.json", "{}")
    touch(tmp_path, "usr/bin/glslc", mode=0o755)
    devices = gp.display_devices(tmp_path)
    assert devices == [gp.DisplayDevice("intel", "card0", "0x56a0")]
    vulkan = tc.find_vulkan(root=tmp_path, environ={"PATH": "/usr/bin"})
    assert vulkan.runs and vulkan.reason == "" and not vulkan.system_headers_usable
    plan = gp.plan_runtimes(inventory(), tools(vulkan=vulkan), devices)
    assert [(r.backend, r.gpus) for r in plan.runtimes] == [("vulkan", ("intel:card0",))]
    no_glslc = tc.VulkanToolchain(**{**vulkan.__dict__, "glslc": ""})
    skipped = gp.plan_runtimes(inventory(), tools(vulkan=no_glslc), devices).skipped
    assert "apt-get install glslc" in skipped[0].reason


def test_apple_gets_metal_built_in_and_nothing_to_build() -> None:
    apple = GpuInfo(vendor="apple", index=0, name="Apple M2", compute="metal", uuid=NA,
                    driver_version=NA, vram_total_bytes=NA, vram_free_bytes=NA,
                    verdict=Verdict("supported", "ok", "Metal"))
    plan = gp.plan_runtimes(inventory(apple), tools())
    assert [r.backend for r in plan.runtimes] == ["metal"] and plan.to_build == ()
    assert "nothing to build" in plan.runtimes[0].note


def test_a_gpu_whose_driver_is_broken_is_named_with_the_fix() -> None:
    problem = GpuProblem("nvidia", "library-not-found", "NVML is not installed",
                         "install the NVIDIA driver", ("0000:01:00.0",))
    (skip,) = gp.plan_runtimes(inventory(problems=[problem]), tools()).skipped
    assert skip.line() == ("no GPU runtime for nvidia:0000:01:00.0: NVML is not installed; "
                           "fix: install the NVIDIA driver")


def test_the_forced_list_is_parsed_strictly_and_vulkan_needs_no_gpu() -> None:
    assert gp.forced_backends(None) is None and gp.forced_backends(" ") is None
    assert gp.forced_backends("none") == ()
    assert gp.forced_backends("Vulkan, cuda") == ("vulkan", "cuda")
    with pytest.raises(UsageError, match="unknown GPU runtime metal"):
        gp.forced_backends("vulkan,metal")
    plan = gp.forced_plan(("vulkan", "cuda"), inventory(), tools(cuda=CUDA))
    assert [r.backend for r in plan.runtimes] == ["vulkan"]
    assert "no usable NVIDIA GPU" in plan.skipped[0].reason


# -- the toolchains -----------------------------------------------------------------------------

def test_cuda_is_found_in_usr_local_cuda_and_its_version_asked_of_nvcc(
        tmp_path: Path, recorder: RecordingRunner) -> None:
    touch(tmp_path, "usr/local/cuda/bin/nvcc", mode=0o755)
    recorder.on("/usr/local/cuda/bin/nvcc", "--version",
                stdout="Cuda compilation tools, release 12.4, V12.4.131\n")
    lacking = tc.find_cuda(recorder, root=tmp_path, environ={"PATH": "/usr/bin"}, site_dirs=[])
    assert lacking.reason.startswith("CUDA 12.4 at /usr/local/cuda/bin/nvcc has no cuBLAS")
    touch(tmp_path, "usr/local/cuda/targets/x86_64-linux/include/cublas_v2.h")
    found = tc.find_cuda(recorder, root=tmp_path, environ={"PATH": "/usr/bin"}, site_dirs=[])
    assert (found.nvcc, found.version, found.usable) == ("/usr/local/cuda/bin/nvcc", "12.4", True)
    assert "pip install nvidia-cuda-nvcc-cu12" in tc.find_cuda(
        recorder, root=tmp_path / "empty", environ={}, site_dirs=[]).reason


def test_cuda_is_found_in_nvidias_pip_wheels_when_the_one_on_path_lacks_cublas(
        tmp_path: Path, recorder: RecordingRunner) -> None:
    site = "/venv/lib/python3.11/site-packages"
    touch(tmp_path, f"{site}/nvidia/cuda_nvcc/bin/nvcc", mode=0o755)
    touch(tmp_path, f"{site}/nvidia/cublas/include/cublas_v2.h")
    touch(tmp_path, "usr/local/bin/nvcc", mode=0o755)       # a toolkit without cuBLAS
    recorder.on(f"{site}/nvidia/cuda_nvcc/bin/nvcc", stdout="release 12.8, V12.8.93")
    recorder.on("/usr/local/bin/nvcc", stdout="release 13.0, V13.0.88")
    found = tc.find_cuda(recorder, root=tmp_path, environ={"PATH": "/usr/local/bin"},
                         site_dirs=[Path(site)])
    assert (found.origin, found.version) == ("pip", "12.8")
    assert found.library_dirs == (f"{site}/nvidia/cuda_runtime/lib", f"{site}/nvidia/cublas/lib")


def test_rocm_is_found_with_its_clang_and_hipblas(tmp_path: Path,
                                                  recorder: RecordingRunner) -> None:
    assert "no ROCm" in tc.find_rocm(recorder, root=tmp_path, environ={}).reason
    touch(tmp_path, "opt/rocm/.info/version", "6.2.0-66\n")
    assert "rocm-llvm" in tc.find_rocm(recorder, root=tmp_path, environ={}).reason
    touch(tmp_path, "opt/rocm/llvm/bin/clang", mode=0o755)
    assert "hipblas-dev" in tc.find_rocm(recorder, root=tmp_path, environ={}).reason
    (tmp_path / "opt/rocm/include/hipblas").mkdir(parents=True)
    assert tc.find_rocm(recorder, root=tmp_path, environ={}) == ROCM.__class__(
        "/opt/rocm", "6.2.0-66", "/opt/rocm/llvm/bin/clang")


def test_vulkan_header_versions_are_read_and_compared(tmp_path: Path) -> None:
    touch(tmp_path, "usr/include/vulkan/vulkan_core.h",
          "#define VK_HEADER_VERSION 309\n#define VK_HEADER_VERSION_COMPLETE "
          "VK_MAKE_API_VERSION(0, 1, 4, VK_HEADER_VERSION)\n")
    touch(tmp_path, "usr/include/spirv/unified1/spirv.hpp")
    assert tc.header_version(tmp_path / "usr/include") == (1, 4, 309)
    assert tc.find_vulkan(root=tmp_path, environ={}).system_headers_usable


def test_the_header_fetch_uses_a_private_apt_configuration(tmp_path: Path,
                                                           recorder: RecordingRunner) -> None:
    recorder.on("apt-get").on("dpkg-deb")
    with pytest.raises(OllamactlError, match=r"older than 1\.4\.309"):
        tc.fetch_vulkan_headers(recorder, tmp_path)   # apt brought nothing in this fake
    update, download = recorder.calls
    staging = tmp_path / "vulkan-headers.partial"
    assert update.argv == ("apt-get", "-q", "-o", f"Dir::Etc::SourceList={staging}/sources.list",
                           "-o", "Dir::Etc::SourceParts=/dev/null",
                           "-o", f"Dir::State::Lists={staging}/lists", "update")
    assert download.argv[-3:] == ("download", "libvulkan-dev", "spirv-headers")
    assert download.cwd == str(staging / "dl")
    assert "trixie main" in (staging / "sources.list").read_text()


# -- building -----------------------------------------------------------------------------------

class FakeCompiler:
    """Stands in for the compiler run: each command goes through the command recorder (which
    answers as scripted); a build that succeeds leaves the library behind, one that fails raises
    as :func:`recipe.compile_logged` does, its command in the log."""

    def __init__(self, runner: RecordingRunner | None = None) -> None:
        self.runner = runner or RecordingRunner(strict=False)

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path,
                 what: str) -> None:
        result = self.runner.run(Cmd(tuple(argv), env=env, check=False))
        with log_path.open("a") as log:
            log.write(f"$ {' '.join(argv)}\n{result.stdout}")
        if not result.ok:
            raise recipe.BuildFailed(f"ERROR: {what} failed; full log: {log_path}")
        if argv[1] == "--build":
            target = argv[argv.index("--target") + 1]
            touch(Path(argv[2]), f"bin/lib{target}.so", "ELF")

    @property
    def argvs(self) -> list[list[str]]:
        return [list(a) for a in self.runner.argvs]


def build(tmp_path: Path, backend: str, targets: Sequence[str], toolchains: tc.Toolchains,
          compiler: FakeCompiler, runner: RecordingRunner | None = None) -> gb.CacheEntry:
    return gb.build_runtime(gb.recipe_for(backend, targets), toolchains,
                            runner=runner or RecordingRunner(), cache=tmp_path / "cache",
                            source=tmp_path / "src", compile_step=compiler, jobs=2)


BASE = ["-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=OFF",
        "-DCMAKE_BUILD_TYPE=Release"]


def test_the_cuda_build_configures_for_the_architectures_and_builds_only_its_target(
        tmp_path: Path) -> None:
    compiler = FakeCompiler()
    entry = build(tmp_path, "cuda", ["86", "89"], tools(cuda=CUDA), compiler)
    configure, make = compiler.argvs
    assert configure[:3] == ["/usr/bin/cmake", "-S", str(tmp_path / "src/vendor/llama.cpp")]
    assert configure[5:] == [*BASE, "-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=86;89",
                             "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc"]
    assert make[:2] == ["/usr/bin/cmake", "--build"]
    assert make[3:] == ["--target", "ggml-cuda", "-j", "2"]
    assert entry.library.read_text() == "ELF"
    assert entry.path.name == f"gpu-cuda-{gb.recipe_for('cuda', ['86', '89']).key}"
    assert entry.record["toolkit"] == "CUDA 12.4"
    assert entry.record["targets"] == ["86", "89"]
    assert entry.record["llama_cpp_python"] == recipe.LLAMA_CPP_PYTHON
    assert entry.record["cmake_args"] == [*BASE, "-DGGML_CUDA=ON",
                                          "-DCMAKE_CUDA_ARCHITECTURES=86;89"]
    assert {"built_at", "build_seconds", "key"} <= set(entry.record)
    assert json.loads((entry.path / gb.RECORD_NAME).read_text()) == entry.record


def test_the_rocm_build_names_its_targets_and_rocms_clang(tmp_path: Path) -> None:
    compiler = FakeCompiler()
    build(tmp_path, "hip", ["gfx1030", "gfx1100"], tools(rocm=ROCM), compiler)
    assert compiler.argvs[0][5:] == [*BASE, "-DGGML_HIP=ON", "-DAMDGPU_TARGETS=gfx1030;gfx1100",
                                     "-DCMAKE_HIP_COMPILER=/opt/rocm/llvm/bin/clang",
                                     "-DCMAKE_PREFIX_PATH=/opt/rocm"]
    assert compiler.argvs[1][-3:] == ["ggml-hip", "-j", "2"]


def test_the_vulkan_build_uses_the_cached_newer_headers_without_apt(tmp_path: Path) -> None:
    headers = tmp_path / "cache/vulkan-headers-1.4.309/usr"
    touch(headers, "include/vulkan/vulkan_core.h",
          "#define VK_HEADER_VERSION 309\n#define VK_HEADER_VERSION_COMPLETE "
          "VK_MAKE_API_VERSION(0, 1, 4, VK_HEADER_VERSION)\n")
    compiler = FakeCompiler()
    entry = build(tmp_path, "vulkan", [], tools(), compiler, RecordingRunner())  # strict: no apt
    assert compiler.argvs[0][5:] == [*BASE, "-DGGML_VULKAN=ON",
                                     f"-DVulkan_INCLUDE_DIR={headers / 'include'}",
                                     f"-DCMAKE_PREFIX_PATH={headers}"]
    assert entry.record["toolkit"] == "Vulkan headers 1.4.309"
    new_enough = tc.VulkanToolchain(**{**MESA.__dict__, "header_version": (1, 4, 313)})
    compiler = FakeCompiler()
    build(tmp_path, "vulkan", [], tools(vulkan=new_enough), compiler)
    assert compiler.argvs[0][5:] == [*BASE, "-DGGML_VULKAN=ON"]    # the system's headers


def test_without_cmake_the_build_says_how_to_get_it(tmp_path: Path) -> None:
    without = tc.Toolchains(CUDA, NO_ROCM, MESA)
    with pytest.raises(OllamactlError, match="no cmake") as info:
        build(tmp_path, "cuda", ["89"], without, FakeCompiler())
    assert info.value.hint and "pip install cmake" in info.value.hint


def test_a_failed_build_leaves_no_cache_entry_and_keeps_its_log(tmp_path: Path) -> None:
    with pytest.raises(OllamactlError, match="configuring ggml-cuda failed") as info:
        build(tmp_path, "cuda", ["89"], tools(cuda=CUDA),
              FakeCompiler(RecordingRunner().on("/usr/bin/cmake", returncode=1,
                                                stdout="nvcc fatal\n")))
    key = gb.recipe_for("cuda", ["89"]).key
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f"gpu-cuda-{key}.log"]
    assert "nvcc fatal" in (tmp_path / f"cache/gpu-cuda-{key}.log").read_text()
    assert info.value.hint and "full log" in info.value.hint
    assert gb.cached_entries(tmp_path / "cache") == []


def test_the_cache_key_changes_with_targets_and_backend_only() -> None:
    base = gb.recipe_for("cuda", ["89"])
    assert gb.recipe_for("cuda", ["89"]).key == base.key
    assert gb.recipe_for("cuda", ["86", "89"]).key != base.key
    assert gb.recipe_for("hip", ["89"]).key != base.key
    assert gb.recipe_for("vulkan", []).key != gb.recipe_for("hip", ["gfx1100"]).key


# -- installing and reading -----------------------------------------------------------------------

def test_ensure_builds_once_installs_and_reuses_the_cache(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    plan = gp.Plan((gp.PlannedRuntime("cuda", ("89",), ("nvidia:0",)),))
    first = FakeCompiler()
    entry = build(tmp_path, "cuda", ["89"], tools(cuda=CUDA), first)
    report = gb.ensure(plan, tools(cuda=CUDA), runner=RecordingRunner(), lib_dir=lib,
                       cache=tmp_path / "cache")
    assert report.built == () and report.installed == (lib / "ollamactl-gpu/cuda/libggml-cuda.so",)
    again = gb.ensure(plan, tools(cuda=CUDA), runner=RecordingRunner(), lib_dir=lib,
                      cache=tmp_path / "cache")
    assert again.installed == ()        # the same build is installed already
    (runtime,) = gb.installed_gpu_runtimes(lib)
    assert (runtime.backend, runtime.targets, runtime.record["key"]) == \
        ("cuda", ("89",), entry.record["key"])
    assert "installed" in capsys.readouterr().out


def test_installed_runtimes_come_in_preference_order_and_unreadable_ones_are_left_out(
        tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for backend, targets in (("vulkan", []), ("cuda", ["89"]), ("hip", ["gfx1100"])):
        touch(lib, f"ollamactl-gpu/{backend}/libggml-{backend}.so", "ELF")
        touch(lib, f"ollamactl-gpu/{backend}/{gb.RECORD_NAME}",
              json.dumps({"backend": backend, "targets": targets}))
    assert [(r.backend, r.targets) for r in gb.installed_gpu_runtimes(lib)] == \
        [("cuda", ("89",)), ("hip", ("gfx1100",)), ("vulkan", ())]
    touch(lib, f"ollamactl-gpu/hip/{gb.RECORD_NAME}", "{not json")
    os.remove(lib / "ollamactl-gpu/cuda/libggml-cuda.so")
    assert [r.backend for r in gb.installed_gpu_runtimes(lib)] == ["vulkan"]
    touch(lib, recipe.RECORD_NAME, json.dumps({"llama_cpp_python": "0.3.36"}))
    touch(lib, f"ollamactl-gpu/vulkan/{gb.RECORD_NAME}",
          json.dumps({"backend": "vulkan", "targets": [], "llama_cpp_python": "0.3.20"}))
    assert gb.installed_gpu_runtimes(lib) == []    # another ggml than the CPU runtime's
    assert gb.installed_gpu_runtimes(tmp_path / "nothing") == []


# -- the CLI --------------------------------------------------------------------------------------

@pytest.fixture
def gpu_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache under OLLAMACTL_CACHE holding a CUDA build, installed in a fake lib dir."""
    monkeypatch.setenv("OLLAMACTL_CACHE", str(tmp_path / "c"))
    lib = tmp_path / "lib"
    monkeypatch.setattr(recipe, "library_dir", lambda: lib)
    entry = gb.build_runtime(gb.recipe_for("cuda", ["89"]), tools(cuda=CUDA),
                             runner=RecordingRunner(), source=tmp_path / "src",
                             compile_step=FakeCompiler())
    gb.install(entry, lib)
    return lib


def test_runtime_list_shows_cached_and_installed_runtimes(cli: Cli, gpu_env: Path) -> None:
    result = cli("runtime", "list")
    assert result.code == 0, result.output
    header, row = result.out.strip().split("\n")
    assert header.split() == ["BACKEND", "TARGETS", "LLAMA-CPP-PYTHON", "SIZE", "INSTALLED",
                              "BUILT", "KEY"]
    cells = re.split(r"\s{2,}", row)
    assert cells[:3] == ["cuda", "89", recipe.LLAMA_CPP_PYTHON]
    assert cells[4] == "yes" and cells[6] == gb.recipe_for("cuda", ["89"]).key
    (data,) = json.loads(cli("runtime", "list", "--json").out)["runtimes"]
    assert (data["installed"], data["cached"], data["size_bytes"]) == (True, True, 3)


def test_runtime_remove_takes_a_backend_or_key_and_refuses_an_unknown_name(
        cli: Cli, gpu_env: Path) -> None:
    bad = cli("runtime", "remove", "rocm")
    assert bad.code == 2 and bad.error.startswith("no GPU runtime 'rocm'")
    key = gb.recipe_for("cuda", ["89"]).key
    removed = cli("runtime", "remove", key)
    assert removed.code == 0 and removed.out.count("removed ") == 2
    assert gb.installed_gpu_runtimes(gpu_env) == []
    assert "no GPU runtime built" in cli("runtime", "list").out


def test_runtime_show_names_the_installed_gpu_runtimes() -> None:
    from ollamactl.cli.runtime import render

    lines = render({"prefix": "/venv", "gpu_runtimes": [{"backend": "vulkan", "targets": []},
                                                         {"backend": "cuda", "targets": ["89"]}]})
    assert "GPU runtimes: vulkan (any device), cuda (89)" in lines
    assert any(ln.startswith("GPU runtimes: none (`ollamactl runtime build`")
               for ln in render({"prefix": "/venv"}))


# -- this machine ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_installed_vulkan_runtime_was_built_by_this_recipe() -> None:
    """setup (test.sh) installs it; its record must match what the recipe builds today."""
    vulkan = [r for r in gb.installed_gpu_runtimes() if r.backend == "vulkan"]
    if not vulkan:
        pytest.skip("no Vulkan runtime installed here (scripts/test.sh builds one as root)")
    record = vulkan[0].record
    assert record["key"] == gb.recipe_for("vulkan", []).key
    assert record["llama_cpp_python"] == recipe.LLAMA_CPP_PYTHON
    assert vulkan[0].library.stat().st_size > 1_000_000
