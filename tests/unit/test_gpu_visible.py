"""CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES applied to an inventory."""

from __future__ import annotations

from ollamactl.gpu import Nvml, scan_gpus
from ollamactl.gpu.visible import apply_amd_visible_devices, apply_cuda_visible_devices
from tests.gpu_fakes import FakeNvml, gtx750ti, h100, rtx3060, rx7900xtx, write_amd_sysfs

DEVICES = [(0, "GPU-aaaa1111-0000"), (1, "GPU-bbbb2222-0000"), (2, "GPU-cccc3333-0000")]


def test_unset_means_every_device():
    vis = apply_cuda_visible_devices(None, DEVICES)
    assert vis.visible == (0, 1, 2) and not vis.is_set and not vis.force_cpu


def test_by_index_keeps_the_given_order():
    assert apply_cuda_visible_devices("2,0", DEVICES).visible == (2, 0)


def test_by_uuid_full_prefix_and_without_gpu_prefix():
    assert apply_cuda_visible_devices("GPU-bbbb2222-0000", DEVICES).visible == (1,)
    assert apply_cuda_visible_devices("GPU-cccc", DEVICES).visible == (2,)
    assert apply_cuda_visible_devices("aaaa1111", DEVICES).visible == (0,)


def test_minus_one_forces_the_cpu():
    vis = apply_cuda_visible_devices("-1", DEVICES)
    assert vis.visible == () and vis.force_cpu
    assert "force the CPU" in vis.notes[0]


def test_list_stops_at_the_first_invalid_entry():
    vis = apply_cuda_visible_devices("1,-1,0", DEVICES)
    assert vis.visible == (1,)
    assert "1 later entries are ignored" in vis.notes[0]
    assert apply_cuda_visible_devices("0,7,1", DEVICES).visible == (0,)
    assert apply_cuda_visible_devices("0,0", DEVICES).visible == (0,)


def test_ambiguous_uuid_prefix_is_invalid():
    devices = [(0, "GPU-ab01"), (1, "GPU-ab02")]
    assert apply_cuda_visible_devices("GPU-ab", devices).visible == ()


def test_empty_value_hides_everything():
    assert apply_cuda_visible_devices("", DEVICES).force_cpu


def test_mig_instances_are_kept_apart():
    vis = apply_cuda_visible_devices("MIG-4f5e6d7c-1111-2222", DEVICES)
    assert vis.mig == ("MIG-4f5e6d7c-1111-2222",) and not vis.force_cpu


def test_rocr_then_hip_renumbers():
    env = {"ROCR_VISIBLE_DEVICES": "2,1", "HIP_VISIBLE_DEVICES": "1"}
    assert apply_amd_visible_devices(env, DEVICES).visible == (1,)
    assert apply_amd_visible_devices({"HIP_VISIBLE_DEVICES": "-1"}, DEVICES).force_cpu
    assert apply_amd_visible_devices({"ROCR_VISIBLE_DEVICES": "GPU-cccc3333-0000"},
                                     DEVICES).visible == (2,)


def test_inventory_marks_hidden_nvidia_gpus(linux_host, tmp_path):
    fake = FakeNvml([h100(), rtx3060(), gtx750ti()], driver="570.86.10")
    by_uuid = scan_gpus(host=linux_host, root=tmp_path, nvml=Nvml(fake),
                        environ={"CUDA_VISIBLE_DEVICES": rtx3060().uuid})
    assert [g.visible for g in by_uuid.gpus] == [False, True, False]
    by_index = scan_gpus(host=linux_host, root=tmp_path, nvml=Nvml(FakeNvml([h100(), rtx3060()])),
                         environ={"CUDA_VISIBLE_DEVICES": "1"})
    assert [g.visible for g in by_index.gpus] == [False, True]
    cpu = scan_gpus(host=linux_host, root=tmp_path, nvml=Nvml(FakeNvml([h100()])),
                    environ={"CUDA_VISIBLE_DEVICES": "-1"})
    assert [g.visible for g in cpu.gpus] == [False]
    assert cpu.cuda_visibility is not None and cpu.cuda_visibility.force_cpu
    assert cpu.usable == ()


def test_inventory_marks_hidden_amd_gpus(linux_host, tmp_path):
    write_amd_sysfs(tmp_path, [rx7900xtx(), rx7900xtx()])
    inventory = scan_gpus(host=linux_host, root=tmp_path, nvml=Nvml(FakeNvml()),
                          environ={"HIP_VISIBLE_DEVICES": "1"})
    assert [g.visible for g in inventory.gpus] == [False, True]
