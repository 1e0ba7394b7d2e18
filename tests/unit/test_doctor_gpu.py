"""Doctor's GPU checks over fake NVML profiles and fake sysfs trees."""

from __future__ import annotations

import pynvml

from tests.doctor_helpers import INSTALLED_UNIT, make_probe, one
from tests.gpu_fakes import (
    FakeNvml,
    gtx750ti,
    h100,
    k80,
    radeon780m,
    rtx3060,
    rx5400,
    rx7900xtx,
    write_amd_sysfs,
    write_nvidia_pci,
)


def test_healthy_h100(ctx, recorder, free_port):
    for node in ("dev/nvidiactl", "dev/nvidia0", "dev/nvidia-uvm"):
        ctx.path("/" + node).parent.mkdir(parents=True, exist_ok=True)
        ctx.path("/" + node).write_text("")
    ctx.path("/sys/module/nvidia_uvm").mkdir(parents=True)
    probe = make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([h100()]))
    assert one(probe, "gpu.nvml").summary == "1 NVIDIA GPU(s), driver 550.54.15, CUDA 12.4"
    assert one(probe, "gpu.nvidia-compute").status == "ok"
    assert one(probe, "gpu.nvidia-driver").summary == "driver 550.54.15 >= 550"
    assert one(probe, "gpu.nvidia-devices").status == "ok"
    assert one(probe, "gpu.vram-headroom").status == "ok"


def test_k80_fails_compute_capability(ctx, recorder, free_port):
    probe = make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([rtx3060(), k80()]))
    finding = one(probe, "gpu.nvidia-compute")
    assert finding.status == "fail" and "Tesla K80" in finding.summary
    assert "3.7" in finding.detail


def test_maxwell_needs_driver_570(ctx, recorder, free_port):
    probe = make_probe(ctx, recorder, port=free_port,
                       nvml=FakeNvml([gtx750ti()], driver="550.120"))
    finding = one(probe, "gpu.nvidia-driver")
    assert finding.status == "fail" and "older than 570" in finding.summary
    assert "GTX 750 Ti has compute capability 5.0" in finding.summary


def test_driver_library_mismatch_is_a_finding_not_a_traceback(ctx, recorder, free_port):
    write_nvidia_pci(ctx.root)
    probe = make_probe(ctx, recorder, port=free_port,
                       nvml=FakeNvml([h100()], init_error=pynvml.NVMLError_LibRmVersionMismatch))
    finding = one(probe, "gpu.nvml")
    assert finding.status == "fail" and "different versions" in finding.summary
    assert "0000:01:00.0" in finding.summary and "reboot" in finding.detail
    assert one(probe, "gpu.nvidia-compute").status == "skip"


def test_missing_nvml_with_a_card_present(ctx, recorder, free_port):
    write_nvidia_pci(ctx.root)
    probe = make_probe(ctx, recorder, port=free_port,
                       nvml=FakeNvml(init_error=pynvml.NVMLError_LibraryNotFound))
    finding = one(probe, "gpu.nvml")
    assert finding.status == "fail" and "install the NVIDIA driver" in finding.detail


def test_gpu_lost_after_suspend_offers_reload_uvm(ctx, recorder, free_port):
    write_nvidia_pci(ctx.root)
    stats = ctx.path("/sys/power/suspend_stats/success")
    stats.parent.mkdir(parents=True)
    stats.write_text("3\n")
    probe = make_probe(ctx, recorder, port=free_port, unit=INSTALLED_UNIT,
                       nvml=FakeNvml([h100()], init_error=pynvml.NVMLError_Unknown),
                       log="msg=\"cuda driver library failed to get device context 999\"\n")
    finding = one(probe, "gpu.after-suspend")
    assert finding.status == "fail" and "after 3 suspend(s)" in finding.summary
    assert finding.fix.commands == (("ollamactl", "gpu", "reload-uvm"),) and finding.fix.safe


def test_missing_uvm_node_fails_with_nvidia_modprobe(ctx, recorder, free_port):
    probe = make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([rtx3060()]))
    finding = one(probe, "gpu.nvidia-devices")
    assert finding.status == "fail" and "/dev/nvidia-uvm" in finding.summary
    assert finding.fix.commands == (("nvidia-modprobe", "-u", "-c=0"),)


def test_cuda_visible_devices_minus_one_warns(ctx, recorder, free_port):
    probe = make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([h100()]),
                       environ={"CUDA_VISIBLE_DEVICES": "-1"})
    finding = one(probe, "gpu.visible-devices")
    assert finding.status == "warn" and "hides every GPU" in finding.summary


def test_other_processes_filling_vram_warn(ctx, recorder, free_port):
    gpu = rtx3060()
    gpu.memory_free_bytes = 300 * 1024**2
    gpu.processes = [(777, 11 * 1024**3)]
    finding = one(make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([gpu])),
                  "gpu.vram-headroom")
    assert finding.status == "warn" and "used by pid 777" in finding.detail


def test_rx5400_override_needed_is_a_safe_fix(ctx, recorder, free_port):
    write_amd_sysfs(ctx.root, [rx5400()])
    finding = one(make_probe(ctx, recorder, port=free_port), "gpu.amd-gfx")
    assert finding.status == "fail" and "HSA_OVERRIDE_GFX_VERSION=10.3.0" in finding.summary
    assert finding.fix.commands == (("ollamactl", "env", "set", "HSA_OVERRIDE_GFX_VERSION",
                                     "10.3.0"),)


def test_override_forced_on_native_card_fails_and_unsets(ctx, recorder, free_port):
    write_amd_sysfs(ctx.root, [rx7900xtx()])
    probe = make_probe(ctx, recorder, port=free_port,
                       environ={"HSA_OVERRIDE_GFX_VERSION": "10.3.0"})
    finding = one(probe, "gpu.amd-gfx")
    assert finding.status == "fail"
    assert finding.fix.commands == (("ollamactl", "env", "unset", "HSA_OVERRIDE_GFX_VERSION"),)


def test_amd_service_user_needs_render_and_video(ctx, recorder, free_port):
    write_amd_sysfs(ctx.root, [rx7900xtx()])
    unit = {**INSTALLED_UNIT, "User": "nobody"}
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "gpu.amd-access")
    assert finding.status == "fail" and "nobody is not in render" in finding.summary
    assert finding.fix.commands[0] == ("usermod", "-aG", "render,video", "nobody")


def test_amd_discovery_timeout_in_log(ctx, recorder, free_port):
    write_amd_sysfs(ctx.root, [rx7900xtx()], driver_version="6.8.5")
    ok_probe = make_probe(ctx, recorder, port=free_port, unit=INSTALLED_UNIT)
    assert one(ok_probe, "gpu.amd-driver").summary == "amdgpu 6.8.5, ROCm 6.1.2"
    recorder2 = type(recorder)()
    ctx2 = type(ctx)(host=ctx.host, runner=recorder2, root=ctx.root)
    slow = make_probe(ctx2, recorder2, port=free_port, unit=INSTALLED_UNIT,
                      log="level=WARN msg=\"failed to finish discovery before timeout\"\n")
    assert one(slow, "gpu.amd-driver").status == "fail"


def test_igpu_only_laptop_warns(ctx, recorder, free_port):
    write_amd_sysfs(ctx.root, [radeon780m()])
    finding = one(make_probe(ctx, recorder, port=free_port), "gpu.igpu")
    assert finding.status == "warn" and "Radeon 780M" in finding.summary
    assert finding.fix.commands == (("ollamactl", "env", "set", "OLLAMA_IGPU_ENABLE", "1"),)


def test_no_gpu_checks_skip_with_reasons(ctx, recorder, free_port):
    probe = make_probe(ctx, recorder, port=free_port,
                       nvml=FakeNvml(init_error=pynvml.NVMLError_LibraryNotFound))
    for check_id in ("gpu.nvml", "gpu.nvidia-compute", "gpu.amd-gfx", "gpu.igpu"):
        finding = one(probe, check_id)
        assert finding.status == "skip" and finding.summary.startswith("no ")


# -- GPU runtimes and where the loaded models run ----------------------------------------------

def _runtime_report(recorder, gpu_runtimes):
    """What `python -m ollamactl.runtime.builds.serving` prints, with these GPU runtimes."""
    import json
    import sys

    recorder.on(sys.executable, "-I", "-m", "ollamactl.runtime.builds.serving",
                stdout=json.dumps({"library_dir": "/venv/llama_cpp/lib",
                                   "gpu_runtimes": gpu_runtimes}))


def _cuda(*targets):
    return {"backend": "cuda", "library": "/venv/libggml-cuda.so", "targets": list(targets)}


VULKAN = {"backend": "vulkan", "library": "/venv/libggml-vulkan.so", "targets": []}


def test_a_usable_gpu_with_only_the_cpu_runtime_fails_with_the_build_command(
        ctx, recorder, free_port):
    _runtime_report(recorder, [])
    finding = one(make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([h100()])),
                  "gpu.runtime")
    assert finding.status == "fail"
    assert finding.summary == ("NVIDIA H100 80GB HBM3 usable, but the runtime has no GPU "
                               "library: models run on the CPU")
    assert finding.fix.commands == (("ollamactl", "runtime", "build"), ("ollamactl", "restart"))


def test_an_nvidia_gpu_served_through_vulkan_only_warns(ctx, recorder, free_port):
    _runtime_report(recorder, [VULKAN])
    finding = one(make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([rtx3060()])),
                  "gpu.runtime")
    assert finding.status == "warn" and "CUDA is usually faster" in finding.summary


def test_a_cuda_runtime_for_the_gpus_present_passes_both_checks(ctx, recorder, free_port):
    _runtime_report(recorder, [_cuda("90")])
    probe = make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([h100()]))
    assert one(probe, "gpu.runtime").summary == "GPU runtime(s): cuda"
    assert one(probe, "gpu.runtime-targets").summary == "built for cuda 90"


def test_a_cuda_runtime_built_for_other_compute_capabilities_fails(ctx, recorder, free_port):
    _runtime_report(recorder, [_cuda("86")])
    finding = one(make_probe(ctx, recorder, port=free_port, nvml=FakeNvml([h100()])),
                  "gpu.runtime-targets")
    assert finding.status == "fail"
    assert finding.summary == "cuda built for 86; NVIDIA H100 80GB HBM3 needs 90"
    assert ("ollamactl", "runtime", "build", "--force") in finding.fix.commands


def test_a_rocm_runtime_is_checked_against_the_override_target(ctx, recorder, free_port):
    write_amd_sysfs(ctx.root, [rx5400()])
    _runtime_report(recorder, [{"backend": "hip", "library": "/venv/libggml-hip.so",
                                "targets": ["gfx1030"]}])
    probe = make_probe(ctx, recorder, port=free_port,
                       environ={"HSA_OVERRIDE_GFX_VERSION": "10.3.0"})
    assert one(probe, "gpu.runtime-targets").status == "ok"


def _ps(**where):
    return {"/api/ps": {"models": [{"name": "smollm2:135m", "size": 700, "size_vram": 300,
                                    "ollamactl": {"layers": 31, "gpu_layers": 13,
                                                  "gpu_devices": ["Vulkan0"], "gpu_error": "",
                                                  **where}}]}}


def test_offload_names_the_layers_on_each_side_when_vram_is_short(ctx, recorder):
    from tests.doctor_helpers import serving_json

    with serving_json(_ps()) as port:
        finding = one(make_probe(ctx, recorder, port=port), "gpu.offload")
    assert finding.status == "warn"
    assert finding.summary == ("VRAM is short: smollm2:135m: 13 of 31 layers on the GPU, 18 on "
                               "the CPU")


def test_offload_shows_why_a_gpu_runtime_fell_back_to_the_cpu(ctx, recorder):
    from tests.doctor_helpers import serving_json

    reason = "ggml could not load the GPU library /venv/libggml-vulkan.so"
    routes = _ps(gpu_layers=0, gpu_devices=[], gpu_error=reason)
    routes["/api/ps"]["models"][0]["size_vram"] = 0
    with serving_json(routes) as port:
        finding = one(make_probe(ctx, recorder, port=port), "gpu.offload")
    assert finding.status == "fail"
    assert finding.summary == ("loaded on the CPU because the GPU runtime failed: "
                               f"smollm2:135m: {reason}")
