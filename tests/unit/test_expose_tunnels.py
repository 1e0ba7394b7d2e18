"""ngrok / cloudflared: the seed's commands, the tool check, and `--run` exec'ing the tool.

The tools themselves are stand-in scripts on PATH (the OS boundary); the CLI runs for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.errors import OllamactlError
from ollamactl.expose import tunnels
from ollamactl.system import RecordingRunner


def test_seed_commands_for_the_default_address() -> None:
    target = tunnels.target_address(None, {})
    assert tunnels.tunnel_argv(tunnels.NGROK, target) == (
        "ngrok", "http", "11434", "--host-header=localhost:11434")
    assert tunnels.tunnel_argv(tunnels.CLOUDFLARED, target) == (
        "cloudflared", "tunnel", "--url", "http://127.0.0.1:11434",
        "--http-host-header=localhost:11434")


def test_target_follows_ollama_host_and_option() -> None:
    from_env = tunnels.target_address(None, {"OLLAMA_HOST": "0.0.0.0:8080"})
    assert tunnels.tunnel_argv(tunnels.NGROK, from_env)[2:] == (
        "8080", "--host-header=localhost:8080")
    lan = tunnels.target_address("10.0.0.5:9000", {})
    assert tunnels.tunnel_argv(tunnels.NGROK, lan)[2] == "10.0.0.5:9000"
    assert tunnels.tunnel_argv(tunnels.CLOUDFLARED, lan)[3] == "http://10.0.0.5:9000"


def test_missing_tool_is_one_clear_error(ctx: Context, recorder: RecordingRunner) -> None:
    recorder.on("ngrok", "version", returncode=127, stderr="ngrok: command not found")
    with pytest.raises(OllamactlError, match="ngrok is not installed") as info:
        tunnels.check_installed(ctx, tunnels.NGROK)
    assert info.value.hint is not None and "ngrok.com" in info.value.hint
    recorder.on("cloudflared", "--version", stdout="cloudflared version 2025.1.0\n")
    assert tunnels.check_installed(ctx, tunnels.CLOUDFLARED) == "cloudflared version 2025.1.0"


def fake_tool(bin_dir: Path, name: str, version_arg: str, record: Path) -> None:
    """A stand-in for the tool: answers its version probe, records any other argv."""
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"if sys.argv[1:] == [{version_arg!r}]:\n    print('{name} version 1.0')\n"
        f"else:\n    open({str(record)!r}, 'w').write(json.dumps(sys.argv))\n")
    script.chmod(0o755)


def run_cli(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "OLLAMA_HOST": "127.0.0.1:11500"}
    return subprocess.run([sys.executable, "-m", "ollamactl", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_print_and_run(tmp_path: Path) -> None:
    record = tmp_path / "argv.json"
    fake_tool(tmp_path, "ngrok", "version", record)
    fake_tool(tmp_path, "cloudflared", "--version", record)
    printed = run_cli(tmp_path, "expose", "ngrok")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == "ngrok http 11500 --host-header=localhost:11500"
    assert "warning:" in printed.stderr and not record.exists()

    ran = run_cli(tmp_path, "expose", "cloudflared", "--run")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(record.read_text())[1:] == [
        "tunnel", "--url", "http://127.0.0.1:11500", "--http-host-header=localhost:11500"]

    as_json = run_cli(tmp_path, "expose", "ngrok", "--json", "--target", "127.0.0.1:9")
    assert json.loads(as_json.stdout)["argv"] == [
        "ngrok", "http", "9", "--host-header=localhost:9"]


def test_missing_tool_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ollamactl", "expose", "cloudflared"],
        env={**os.environ, "PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 1
    assert "cloudflared is not installed" in result.stderr
