"""`ollamactl gpu list|check` through the real CLI on this machine (no GPU here: honest empty)."""

from __future__ import annotations

import json

import pytest

from ollamactl.gpu import Nvml
from ollamactl.gpu.nvidia import NvmlUnavailable
from tests.conftest import Cli


def _has_nvml() -> bool:
    try:
        return Nvml().is_available()
    except NvmlUnavailable:
        return False


def test_gpu_list_json_matches_the_inventory(cli: Cli, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = cli("gpu", "list", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert set(data) >= {"gpus", "problems", "notes", "recommended_amd_overrides"}
    if not _has_nvml():
        assert [g for g in data["gpus"] if g["vendor"] == "nvidia"] == []


def test_gpu_check_without_gpus_says_cpu(cli: Cli, monkeypatch):
    if _has_nvml():
        pytest.skip("this machine has a working NVIDIA driver")
    result = cli("gpu", "check")
    assert result.code == 0
    assert "no GPU found: the server will run on the CPU" in result.out


def test_gpu_scans_with_the_service_settings_when_a_service_is_installed(ctx, monkeypatch):
    """Doctor's rule: the installed service's settings, never a shell's (they do not reach the
    service); without a service, the shell's (a server started by hand inherits them)."""
    from ollamactl.cli.gpu import server_environ
    from ollamactl.service.systemd import DROPIN_PATH, UNIT_PATH

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    assert server_environ(ctx)["CUDA_VISIBLE_DEVICES"] == "0"       # no unit: this shell
    ctx.path(UNIT_PATH).parent.mkdir(parents=True)
    ctx.path(UNIT_PATH).write_text("[Service]\nExecStart=/usr/bin/ollama serve\n")
    ctx.path(DROPIN_PATH).parent.mkdir(parents=True)
    ctx.path(DROPIN_PATH).write_text('[Service]\nEnvironment="CUDA_VISIBLE_DEVICES=1"\n')
    env = server_environ(ctx)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and "HSA_OVERRIDE_GFX_VERSION" not in env
