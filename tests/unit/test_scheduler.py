"""Scheduler rules (queue limit, eviction order, keep_alive, reloads, memory) with the runner
process faked at its boundary: the fake starts instantly and records when it is stopped; the GPU
runtime's device discovery (a child process) answers what the test gives."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from ollamactl.runtime.runner.config import RunnerConfig
from ollamactl.runtime.scheduling.memory import MemoryState
from ollamactl.runtime.scheduling.runner_client import ReadyInfo, RunnerFailed, RunnerProcess
from ollamactl.runtime.scheduling.scheduler import (
    QUEUE_FULL_MESSAGE,
    ModelRef,
    ModelTooLarge,
    QueueFull,
    Scheduler,
    SchedulerConfig,
    SchedulerEvents,
)
from tests.gpu_fakes import GIB


class FakeRunnerProcess:
    """Stands in for the subprocess: ready at once, alive until stopped."""

    def __init__(self, config: RunnerConfig, log: list[str]) -> None:
        self.config = config
        self.log = log
        self.alive = True
        self.reader = None
        self.pid = 4242
        self.death: str | None = None

    @property
    def is_alive(self) -> bool:
        return self.alive

    async def start(self, timeout_s: float) -> ReadyInfo:
        self.log.append(f"start {Path(self.config.model_path).name} ctx={self.config.num_ctx}")
        return ReadyInfo(self.config.num_ctx, 8192, 1)

    async def stop(self) -> None:
        if self.alive:
            self.log.append(f"stop {Path(self.config.model_path).name}")
        self.alive = False


def make_scheduler(log: list[str], *, free: int = 10**12,
                   runner: Callable[[RunnerConfig, Scheduler], Any] | None = None,
                   **kw: Any) -> Scheduler:
    """``free``: RAM free with nothing loaded; each loaded runner takes its estimate.
    ``runner``: the fake runner process to start (default :class:`FakeRunnerProcess`)."""

    def spawn(config: RunnerConfig) -> RunnerProcess:
        fake: Any = runner(config, sched) if runner else FakeRunnerProcess(config, log)
        return fake  # type: ignore[no-any-return]

    def memory() -> MemoryState:
        return MemoryState(free - sum(item.size_bytes for item in sched.loaded.values()))

    sched = Scheduler(SchedulerConfig(**kw), memory=memory, spawn=spawn)
    return sched


def ref(name: str, size: int = 100) -> ModelRef:
    return ModelRef(name=name, digest=name * 4, model_path=Path(f"/models/{name}"),
                    estimate_bytes=size)


def cfg(name: str, num_ctx: int = 2048, parallel: int = 1) -> RunnerConfig:
    return RunnerConfig(model_path=f"/models/{name}", num_ctx=num_ctx, num_parallel=parallel)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_queue_full_beyond_max_queue() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, max_queue=1, num_parallel=1)
        first = await sched.acquire(ref("a"), cfg("a"), None)
        waiting = asyncio.create_task(sched.acquire(ref("a"), cfg("a"), None))
        await settle()
        assert sched.pending == 1
        with pytest.raises(QueueFull) as refused:
            await sched.acquire(ref("a"), cfg("a"), None)
        assert str(refused.value) == QUEUE_FULL_MESSAGE
        sched.release(first)
        second = await waiting
        sched.release(second)
        await sched.close()

    run(scenario)


def test_max_loaded_one_evicts_the_idle_model() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, max_loaded_models=1)
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        sched.release(await sched.acquire(ref("b"), cfg("b"), None))
        assert log == ["start a ctx=2048", "stop a", "start b ctx=2048"]
        assert [item.ref.name for item in sched.running()] == ["b"]
        await sched.close()

    run(scenario)


def test_by_default_three_models_stay_loaded_on_the_cpu() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log)       # OLLAMA_MAX_LOADED_MODELS unset: Ollama's 3 x 1
        for name in "abc":
            sched.release(await sched.acquire(ref(name), cfg(name), None))
        assert not any(line.startswith("stop") for line in log)
        sched.release(await sched.acquire(ref("d"), cfg("d"), None))
        assert sum(line.startswith("stop") for line in log) == 1
        assert len(sched.running()) == 3
        await sched.close()

    run(scenario)


def test_victim_is_shortest_keep_alive_not_lru() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, max_loaded_models=2)
        sched.release(await sched.acquire(ref("a"), cfg("a"), 60.0))
        sched.release(await sched.acquire(ref("b"), cfg("b"), math.inf))
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))  # a used most recently
        sched.release(await sched.acquire(ref("c"), cfg("c"), None))
        assert "stop a" in log and "stop b" not in log
        await sched.close()

    run(scenario)


def test_busy_victim_unloads_after_its_request() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, max_loaded_models=1)
        lease_a = await sched.acquire(ref("a"), cfg("a"), None)
        loading_b = asyncio.create_task(sched.acquire(ref("b"), cfg("b"), None))
        await settle()
        assert not loading_b.done() and "stop a" not in log
        sched.release(lease_a)
        sched.release(await loading_b)
        assert log == ["start a ctx=2048", "stop a", "start b ctx=2048"]
        await sched.close()

    run(scenario)


def test_keep_alive_zero_unloads_after_release_and_timer_expires() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log)
        sched.release(await sched.acquire(ref("a"), cfg("a"), 0))
        await settle()
        assert "stop a" in log and not sched.running()
        sched.release(await sched.acquire(ref("b"), cfg("b"), 0.05))
        assert [item.ref.name for item in sched.running()] == ["b"]
        await asyncio.sleep(0.15)
        await settle()
        assert "stop b" in log and not sched.running()
        await sched.close()

    run(scenario)


def test_forever_never_expires_and_expire_unloads() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log)
        sched.release(await sched.acquire(ref("a"), cfg("a"), math.inf))
        (loaded,) = sched.running()
        assert math.isinf(loaded.expires_at)
        assert sched.expire(Path("/models/a")) is True
        await settle()
        assert "stop a" in log and not sched.running()
        assert sched.expire(Path("/models/a")) is False
        await sched.close()

    run(scenario)


def test_absent_keep_alive_keeps_the_last_explicit_one() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, default_keep_alive_s=300.0)
        sched.release(await sched.acquire(ref("a"), cfg("a"), math.inf))
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        assert math.isinf(sched.running()[0].keep_alive_s)
        await sched.close()

    run(scenario)


def test_runner_option_change_reloads() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log)
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        sched.release(await sched.acquire(ref("a"), cfg("a", num_ctx=4096), None))
        assert log == ["start a ctx=2048", "stop a", "start a ctx=4096"]
        await sched.close()

    run(scenario)


def test_model_that_can_never_fit_is_refused() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, free=1000)
        with pytest.raises(ModelTooLarge, match="requires more system memory"):
            await sched.acquire(ref("huge", size=5000), cfg("huge"), None)
        assert log == []
        await sched.close()

    run(scenario)


def test_memory_pressure_evicts_before_loading() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, free=1000)
        sched.release(await sched.acquire(ref("a", size=600), cfg("a"), None))
        sched.release(await sched.acquire(ref("b", size=800), cfg("b"), None))
        assert log == ["start a ctx=2048", "stop a", "start b ctx=2048"]
        await sched.close()

    run(scenario)


def test_dead_runner_is_replaced() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log)
        lease = await sched.acquire(ref("a"), cfg("a"), None)
        fake: Any = lease.loaded.process
        fake.alive = False
        sched.release(lease)
        await settle()
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        assert log.count("start a ctx=2048") == 2
        await sched.close()

    run(scenario)


class RecordingEvents(SchedulerEvents):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def runner_loaded(self, model: str) -> None:
        self.seen.append(f"load {model}")

    def runner_unloaded(self, model: str, reason: str) -> None:
        self.seen.append(f"unload {model} {reason}")

    def runner_crashed(self, model: str, signal: str) -> None:
        self.seen.append(f"crash {model} {signal}")


def test_loads_and_unloads_are_reported_with_their_reason() -> None:
    async def scenario() -> None:
        events = RecordingEvents()
        sched = make_scheduler([], max_loaded_models=1)
        sched.events = events
        sched.release(await sched.acquire(ref("a"), cfg("a"), 0))          # keep_alive 0
        await settle()
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        sched.release(await sched.acquire(ref("b"), cfg("b"), None))       # evicts a
        await settle()
        assert sched.expire(Path("/models/b"))                             # keep_alive: 0 asked
        await settle()
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        sched.release(await sched.acquire(ref("a"), cfg("a", num_ctx=4096), None))  # reload
        lease = await sched.acquire(ref("a"), cfg("a", num_ctx=4096), None)
        fake: Any = lease.loaded.process
        fake.alive = False                                                 # died while serving
        sched.release(lease)
        await settle()
        sched.release(await sched.acquire(ref("c"), cfg("c"), None))
        await sched.close()
        assert events.seen == [
            "load a", "unload a keep_alive", "load a", "unload a evicted", "load b",
            "unload b requested", "load a", "unload a evicted", "load a", "unload a crashed",
            "load c", "unload c shutdown"]

    run(scenario)


def test_runner_holds_a_queue_of_num_parallel_that_counts_as_pending() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = make_scheduler(log, max_queue=3, num_parallel=2)
        leases = [await sched.acquire(ref("a"), cfg("a", parallel=2), None) for _ in range(4)]
        assert sched.pending == 2            # two run, two wait inside the runner
        fifth = asyncio.create_task(sched.acquire(ref("a"), cfg("a", parallel=2), None))
        await settle()
        assert not fifth.done() and sched.pending == 3
        with pytest.raises(QueueFull):
            await sched.acquire(ref("a"), cfg("a", parallel=2), None)
        sched.release(leases.pop(0))
        leases.append(await fifth)
        assert sched.pending == 2
        for lease in leases:
            sched.release(lease)
        assert sched.pending == 0
        await sched.close()

    run(scenario)


class TightRunnerProcess(FakeRunnerProcess):
    """A runner whose load fails the way llama.cpp reports it while any other runner lives
    (``failure``), as on a machine whose memory the prediction overestimated."""

    def __init__(self, config: RunnerConfig, log: list[str], sched: Scheduler,
                 failure: str) -> None:
        super().__init__(config, log)
        self.sched = sched
        self.failure = failure

    async def start(self, timeout_s: float) -> ReadyInfo:
        if any(item.process.is_alive for item in self.sched.loaded.values()):
            self.log.append(f"fail {Path(self.config.model_path).name}")
            raise RunnerFailed(self.failure)
        return await super().start(timeout_s)


def tight_scheduler(log: list[str], failure: str) -> Scheduler:
    return make_scheduler(log, max_loaded_models=3, runner=lambda config, sched:
                          TightRunnerProcess(config, log, sched, failure))


def test_a_load_out_of_memory_evicts_every_other_model_and_retries_once() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = tight_scheduler(
            log, "EngineError: unable to create the llama context (out of memory?)")
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        log.clear()
        sched.release(await sched.acquire(ref("b"), cfg("b"), None))
        assert log == ["fail b", "stop a", "start b ctx=2048"]
        assert [item.ref.name for item in sched.running()] == ["b"]
        await sched.close()

    run(scenario)


def test_a_load_that_fails_for_another_reason_keeps_the_other_models() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = tight_scheduler(log, "EngineError: unable to load model: /models/b")
        sched.release(await sched.acquire(ref("a"), cfg("a"), None))
        log.clear()
        with pytest.raises(RunnerFailed, match="unable to load model"):
            await sched.acquire(ref("b"), cfg("b"), None)
        assert log == ["fail b"]
        assert [item.ref.name for item in sched.running()] == ["a"]
        await sched.close()

    run(scenario)


# -- GPU placement at each load ---------------------------------------------------------------
# The GPU runtime's device discovery (a child process) is faked at its boundary: it answers what
# `python -m ollamactl.runtime.builds.loader devices LIB` would. The model header is SmolLM2's.

VULKAN_LIB = "/runtime/ollamactl-gpu/vulkan/libggml-vulkan.so"


@dataclasses.dataclass(frozen=True)
class FakeGpuRuntime:
    backend: str
    library: Path
    targets: tuple[str, ...] = ()


class GpuRunnerProcess(FakeRunnerProcess):
    """Loads where its config says, as the real runner reports it; ``broken``: a GPU load
    fails the way a runner that dies in the driver does."""

    def __init__(self, config: RunnerConfig, log: list[str], broken: str = "") -> None:
        super().__init__(config, log)
        self.broken = broken

    async def start(self, timeout_s: float) -> ReadyInfo:
        name = Path(self.config.model_path).name
        if self.config.gpu_layers and self.broken:
            self.log.append(f"fail {name} on GPU")
            raise RunnerFailed(self.broken)
        self.log.append(f"start {name} gpu_layers={self.config.gpu_layers}")
        return ReadyInfo(self.config.num_ctx, 8192, 1, gpu_layers=self.config.gpu_layers,
                         layers=31)


def smollm2_info() -> Any:
    from ollamactl.runtime.store import gguf
    from tests.integration.server_process import smollm2_gguf

    return gguf.read_metadata(smollm2_gguf())


def gpu_scheduler(log: list[str], *, devices: list[dict[str, Any]], errors: list[str] = (),
                  broken: str = "", requested: str = "",
                  environ: dict[str, str] | None = None, dev: Path = Path("/nonexistent"),
                  **kw: Any) -> Scheduler:
    """A scheduler whose Vulkan runtime's discovery answers ``devices`` and ``errors``; by
    default GGML_VK_VISIBLE_DEVICES names lavapipe, so discovery runs without device nodes."""
    from ollamactl.runtime.scheduling.gpus import Gpus

    asked: list[str] = []

    def discover(library: str, environ: Any) -> dict[str, Any]:
        asked.append(library)
        return {"devices": devices, "errors": list(errors)}

    sched = make_scheduler(log, runner=lambda config, _s: GpuRunnerProcess(config, log, broken),
                           **kw)
    sched.gpus = Gpus([FakeGpuRuntime("vulkan", Path(VULKAN_LIB))], requested=requested,
                      environ={"GGML_VK_VISIBLE_DEVICES": "0"} if environ is None else environ,
                      discover=discover, dev=dev)
    sched.discoveries = asked  # type: ignore[attr-defined]
    return sched


def gpu_ref(name: str) -> ModelRef:
    info = smollm2_info()
    return ModelRef(name=name, digest=name * 4, model_path=Path(f"/models/{name}"),
                    estimate_bytes=300 * 2**20, info=info)


LAVAPIPE = {"id": "Vulkan0", "description": "llvmpipe", "kind": "gpu",
            "free": 2 * GIB, "total": 2 * GIB}


async def whole_model_placement() -> Any:
    """SmolLM2's placement when it goes wholly on lavapipe's 2 GiB."""
    probe = gpu_scheduler([], devices=[LAVAPIPE])
    whole = (await probe.acquire(gpu_ref("a"), cfg("a"), None)).loaded.placement
    await probe.close()
    return whole


def test_a_model_that_fits_goes_wholly_on_the_gpu_and_discovery_runs_once() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = gpu_scheduler(log, devices=[LAVAPIPE])
        lease = await sched.acquire(gpu_ref("a"), cfg("a"), None)
        loaded = lease.loaded
        assert loaded.config.gpu_library == VULKAN_LIB
        assert loaded.config.gpu_devices == ("Vulkan0",)
        assert loaded.config.gpu_layers == 31 == loaded.placement.total_layers
        assert loaded.size_vram_bytes == loaded.size_bytes == loaded.placement.total_bytes > 0
        assert loaded.gpu_error == ""
        sched.release(lease)
        sched.release(await sched.acquire(gpu_ref("b"), cfg("b"), None))
        assert sched.discoveries == [VULKAN_LIB]  # type: ignore[attr-defined]
        await sched.close()

    run(scenario)


def test_gpu_overhead_leaves_room_for_part_of_the_model_and_ps_shows_the_split() -> None:
    async def scenario() -> None:
        from ollamactl.humanize import processor_text

        log: list[str] = []
        whole = await whole_model_placement()
        # the whole model's VRAM is the backend's minimum, the graph and the layers: leave
        # room for about half the layers
        layers = whole.vram_bytes - whole.graph_bytes - 457 * 2**20
        overhead = 2 * GIB - whole.vram_bytes + layers // 2
        sched = gpu_scheduler(log, devices=[LAVAPIPE], gpu_overhead_bytes=overhead)
        lease = await sched.acquire(gpu_ref("a"), cfg("a"), None)
        loaded = lease.loaded
        assert 0 < loaded.config.gpu_layers < 31
        assert 0 < loaded.size_vram_bytes < loaded.size_bytes
        assert processor_text(loaded.size_bytes, loaded.size_vram_bytes).endswith("% CPU/GPU")
        sched.release(lease)
        await sched.close()

    run(scenario)


def test_num_gpu_zero_and_a_cpu_library_keep_the_model_off_the_gpu() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = gpu_scheduler(log, devices=[LAVAPIPE])
        zero = dataclasses.replace(cfg("a"), num_gpu=0)
        lease = await sched.acquire(gpu_ref("a"), zero, None)
        assert lease.loaded.config.gpu_layers == 0 and lease.loaded.size_vram_bytes == 0
        sched.release(lease)
        await sched.close()
        forced = gpu_scheduler(log, devices=[LAVAPIPE], requested="cpu_avx2")
        lease = await forced.acquire(gpu_ref("a"), cfg("a"), None)
        assert lease.loaded.size_vram_bytes == 0
        assert "OLLAMA_LLM_LIBRARY=cpu_avx2" in lease.loaded.gpu_error
        assert forced.discoveries == []  # type: ignore[attr-defined]
        forced.release(lease)
        await forced.close()

    run(scenario)


def test_no_device_is_no_problem_but_a_runtime_that_fails_to_start_is_kept() -> None:
    async def scenario() -> None:
        log: list[str] = []
        quiet = gpu_scheduler(log, devices=[])
        lease = await quiet.acquire(gpu_ref("a"), cfg("a"), None)
        assert lease.loaded.size_vram_bytes == 0 and lease.loaded.gpu_error == ""
        quiet.release(lease)
        await quiet.close()
        broken = gpu_scheduler(log, devices=[], errors=["ggml could not load the GPU library "
                                                         f"{VULKAN_LIB}"])
        lease = await broken.acquire(gpu_ref("a"), cfg("a"), None)
        assert lease.loaded.gpu_error == ("the GPU runtime failed to start (vulkan: ggml could "
                                          f"not load the GPU library {VULKAN_LIB})")
        assert log == ["start a gpu_layers=0", "stop a", "start a gpu_layers=0"]
        broken.release(lease)
        await broken.close()

    run(scenario)


def test_a_gpu_load_that_fails_is_retried_once_on_the_cpu_with_the_reason() -> None:
    async def scenario() -> None:
        log: list[str] = []
        sched = gpu_scheduler(log, devices=[LAVAPIPE],
                              broken="llama runner process has terminated: signal: aborted")
        lease = await sched.acquire(gpu_ref("a"), cfg("a"), None)
        assert log == ["fail a on GPU", "start a gpu_layers=0"]
        assert lease.loaded.size_vram_bytes == 0
        assert lease.loaded.gpu_error == ("loading on Vulkan0 failed: llama runner process has "
                                          "terminated: signal: aborted")
        sched.release(lease)
        await sched.close()

    run(scenario)


def test_a_model_that_only_partly_fits_beside_another_evicts_it_first() -> None:
    async def scenario() -> None:
        log: list[str] = []
        whole = await whole_model_placement()
        # room for one model and a half (each counts the backend's minimum, as in Ollama):
        # beside the first, the second would not fit whole
        free = whole.vram_bytes + whole.vram_bytes // 2
        device = {**LAVAPIPE, "free": free, "total": free}
        log.clear()
        sched = gpu_scheduler(log, devices=[device])
        sched.release(await sched.acquire(gpu_ref("a"), cfg("a"), None))
        lease = await sched.acquire(gpu_ref("b"), cfg("b"), None)
        assert log == ["start a gpu_layers=31", "stop a", "start b gpu_layers=31"]
        assert lease.loaded.size_vram_bytes == lease.loaded.size_bytes
        sched.release(lease)
        await sched.close()

    run(scenario)


def test_the_default_context_is_ollamas_vram_tier_less_the_overhead() -> None:
    async def scenario() -> None:
        log: list[str] = []
        assert await make_scheduler(log).default_num_ctx() == 4096       # no GPU runtime
        assert await gpu_scheduler(log, devices=[]).default_num_ctx() == 4096
        for total, overhead, tier in ((48 * GIB, 0, 262144), (48 * GIB, 2 * GIB, 32768),
                                      (24 * GIB, 0, 32768), (22 * GIB, 0, 4096),
                                      (2 * GIB, 0, 4096)):
            device = {**LAVAPIPE, "free": total, "total": total}
            sched = gpu_scheduler(log, devices=[device], gpu_overhead_bytes=overhead)
            assert await sched.default_num_ctx() == tier, (total, overhead)
        two = [{**LAVAPIPE, "free": 24 * GIB, "total": 24 * GIB},
               {**LAVAPIPE, "id": "Vulkan1", "free": 24 * GIB, "total": 24 * GIB}]
        assert await gpu_scheduler(log, devices=two).default_num_ctx() == 262144

    run(scenario)


def test_by_default_three_models_stay_loaded_per_gpu_found() -> None:
    async def scenario() -> None:
        log: list[str] = []
        two = [LAVAPIPE, {**LAVAPIPE, "id": "Vulkan1"}]
        sched = gpu_scheduler(log, devices=two)
        for index in range(7):
            name = f"m{index}"
            on_cpu = dataclasses.replace(cfg(name), num_gpu=0)   # placement aside
            sched.release(await sched.acquire(gpu_ref(name), on_cpu, None))
        assert sum(line.startswith("stop") for line in log) == 1 and len(sched.running()) == 6
        await sched.close()

    run(scenario)


def test_without_device_nodes_no_runtime_is_even_listed(tmp_path: Path) -> None:
    from ollamactl.runtime.scheduling.gpus import Gpus

    def discover(library: str, environ: Any) -> dict[str, Any]:
        raise AssertionError("no discovery without a device node")

    bare = Gpus(environ={}, discover=discover, dev=tmp_path)
    assert bare.backend() is None and bare.runtimes is None and bare.problem == ""
    (tmp_path / "dxg").touch()      # WSL2's GPU node: CUDA and Vulkan go through it
    wsl = Gpus(environ={}, dev=tmp_path)
    assert wsl.may_have_devices("cuda") and wsl.may_have_devices("vulkan")
    assert not wsl.may_have_devices("hip")


def test_without_device_nodes_or_a_named_device_no_discovery_runs(tmp_path: Path) -> None:
    async def scenario() -> None:
        log: list[str] = []
        bare = gpu_scheduler(log, devices=[LAVAPIPE], environ={}, dev=tmp_path)
        lease = await bare.acquire(gpu_ref("a"), cfg("a"), None)
        assert bare.discoveries == []  # type: ignore[attr-defined]
        assert lease.loaded.size_vram_bytes == 0 and lease.loaded.gpu_error == ""
        bare.release(lease)
        await bare.close()
        (tmp_path / "dri").mkdir()
        (tmp_path / "dri" / "renderD128").touch()       # a GPU's render node
        with_node = gpu_scheduler(log, devices=[LAVAPIPE], environ={}, dev=tmp_path)
        lease = await with_node.acquire(gpu_ref("a"), cfg("a"), None)
        assert with_node.discoveries == [VULKAN_LIB]  # type: ignore[attr-defined]
        assert lease.loaded.size_vram_bytes > 0
        with_node.release(lease)
        await with_node.close()

    run(scenario)
