"""`gpu reload-uvm`: stop -> rmmod -> modprobe -> start -> NVML check, through the recording
runner; refusal (with the holders named) when another process uses /dev/nvidia-uvm."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from ollamactl.context import Context
from ollamactl.errors import GpuError, PrivilegeError
from ollamactl.gpu.nvidia import Nvml
from ollamactl.gpu.uvm import device_holders, process_tree, reload_uvm
from ollamactl.service.base import LogQuery, LogSource, ServiceManager, ServiceState
from ollamactl.service.env import EnvStore
from ollamactl.system import Cmd, PlanRunner, RecordingRunner
from tests.gpu_fakes import FakeNvml, h100

SERVICE_PID = 500


class FakeServiceManager(ServiceManager):
    """A systemd-like service whose stop/start go through the same runner, and whose process
    leaves the fake /proc when stopped (as the real one leaves the real /proc)."""

    name = "fake"

    def __init__(self, ctx: Context, proc: Path, *, running: bool = True) -> None:
        super().__init__(ctx)
        self.proc = proc
        self.running = running

    def status(self) -> ServiceState:
        return ServiceState("fake", True, "active" if self.running else "inactive",
                            pid=SERVICE_PID if self.running else None)

    def stop(self) -> None:
        self.ctx.runner.run(Cmd(("systemctl", "stop", "ollama")))
        for pid in (SERVICE_PID, SERVICE_PID + 1):
            shutil.rmtree(self.proc / str(pid), ignore_errors=True)
        self.running = False

    def start(self) -> None:
        self.ctx.runner.run(Cmd(("systemctl", "start", "ollama")))
        self.running = True

    def restart(self) -> None:
        self.stop()
        self.start()

    def env_store(self) -> EnvStore:
        raise NotImplementedError

    def log_source(self) -> LogSource:
        class _NoLogs(LogSource):
            location = "none"

            def read(self, query: LogQuery) -> Iterator[str]:
                return iter(())
        return _NoLogs()


def _process(proc: Path, pid: int, ppid: int, comm: str, *, uvm: bool) -> None:
    base = proc / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "comm").write_text(comm + "\n")
    (base / "status").write_text(f"Name:\t{comm}\nPPid:\t{ppid}\n")
    (base / "fd" / "0").symlink_to("/dev/null")
    if uvm:
        (base / "fd" / "7").symlink_to("/dev/nvidia-uvm")


@pytest.fixture
def machine(ctx: Context) -> Path:
    """A staging root with the module loaded, the device node, and the service's processes."""
    root = ctx.root
    (root / "sys/module/nvidia_uvm").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "dev/nvidia-uvm").write_text("")
    proc = root / "proc"
    _process(proc, 1, 0, "init", uvm=False)
    _process(proc, SERVICE_PID, 1, "ollamactl", uvm=False)
    _process(proc, SERVICE_PID + 1, SERVICE_PID, "runner", uvm=True)   # the model runner
    return proc


def test_reload_order_stop_rmmod_modprobe_start_then_nvml(ctx, recorder, machine):
    manager = FakeServiceManager(ctx, machine)
    recorder.on("systemctl").on("rmmod", "nvidia_uvm").on("modprobe", "nvidia_uvm")
    fake = FakeNvml([h100()])
    report = reload_uvm(ctx, manager=manager, nvml_factory=lambda: Nvml(fake))
    assert recorder.argvs == [
        ("systemctl", "stop", "ollama"),
        ("rmmod", "nvidia_uvm"),
        ("modprobe", "nvidia_uvm"),
        ("systemctl", "start", "ollama"),
    ]
    assert report.gpu_count == 1 and fake.init_calls == 1
    assert report.steps[-1] == "NVML sees 1 GPU(s)"


def test_refuses_when_another_process_holds_the_device(ctx, recorder, machine):
    _process(machine, 900, 1, "python3", uvm=True)
    _process(machine, 901, 1, "blender", uvm=True)
    manager = FakeServiceManager(ctx, machine)
    with pytest.raises(GpuError) as info:
        reload_uvm(ctx, manager=manager, nvml_factory=lambda: Nvml(FakeNvml([h100()])))
    assert "900 (python3), 901 (blender)" in info.value.message
    assert "nothing was changed" in info.value.message
    assert recorder.calls == [] and manager.running   # the service was not touched


def test_rmmod_in_use_restarts_the_service_and_explains(ctx, recorder, machine):
    recorder.on("systemctl").on("rmmod", "nvidia_uvm", returncode=1,
                                stderr="rmmod: ERROR: Module nvidia_uvm is in use\n")
    manager = FakeServiceManager(ctx, machine)
    with pytest.raises(GpuError) as info:
        reload_uvm(ctx, manager=manager, nvml_factory=lambda: Nvml(FakeNvml([h100()])))
    assert "Module nvidia_uvm is in use" in info.value.message
    assert recorder.argvs == [("systemctl", "stop", "ollama"), ("rmmod", "nvidia_uvm"),
                              ("systemctl", "start", "ollama")]
    assert manager.running


def test_nvml_still_failing_after_reload_is_reported(ctx, recorder, machine):
    recorder.on("systemctl").on("rmmod").on("modprobe")
    fake = FakeNvml(init_error=pynvml.NVMLError_Unknown)
    with pytest.raises(GpuError) as info:
        reload_uvm(ctx, manager=FakeServiceManager(ctx, machine),
                   nvml_factory=lambda: Nvml(fake))
    assert "NVML still fails" in info.value.message


def test_stopped_service_stays_stopped(ctx, recorder, machine):
    shutil.rmtree(machine / str(SERVICE_PID + 1))
    recorder.on("rmmod").on("modprobe")
    manager = FakeServiceManager(ctx, machine, running=False)
    reload_uvm(ctx, manager=manager, nvml_factory=lambda: Nvml(FakeNvml([h100()])))
    assert recorder.argvs == [("rmmod", "nvidia_uvm"), ("modprobe", "nvidia_uvm")]


def test_missing_device_node_is_created_with_nvidia_modprobe(ctx, recorder, machine):
    (ctx.root / "dev/nvidia-uvm").unlink()
    recorder.on("systemctl").on("rmmod").on("modprobe").on("nvidia-modprobe")
    reload_uvm(ctx, manager=FakeServiceManager(ctx, machine),
               nvml_factory=lambda: Nvml(FakeNvml([h100()])))
    assert recorder.argvs[3] == ("nvidia-modprobe", "-u", "-c=0")


def test_dry_run_only_plans(ctx, machine):
    plan = PlanRunner(probe_runner=RecordingRunner())
    dry = dataclasses.replace(ctx, runner=plan, dry_run=True)
    reload_uvm(dry, manager=FakeServiceManager(dry, machine),
               nvml_factory=lambda: pytest.fail("NVML must not be asked in dry-run"))
    assert [s.target for s in plan.plan] == ["systemctl stop ollama", "rmmod nvidia_uvm",
                                             "modprobe nvidia_uvm", "systemctl start ollama"]


def test_needs_root(ctx, machine):
    user = dataclasses.replace(ctx, host=dataclasses.replace(ctx.host, is_root=False))
    with pytest.raises(PrivilegeError):
        reload_uvm(user, manager=None)


def test_holders_and_process_tree_from_proc(machine):
    assert [h.pid for h in device_holders(machine)] == [SERVICE_PID + 1]
    assert process_tree(machine, SERVICE_PID) == {SERVICE_PID, SERVICE_PID + 1}
