"""The CLI through its real entry point: env get/list, errors -> one line + exit code, --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from ollamactl import __version__, errors
from ollamactl.cli import app as app_module
from tests.conftest import Cli


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OLLAMA_"):
            monkeypatch.delenv(name)


def test_env_get_default_and_source(cli: Cli) -> None:
    code, out, _ = cli("env", "get", "OLLAMA_HOST")
    assert code == 0
    assert out.splitlines()[0] == "OLLAMA_HOST=127.0.0.1:11434"
    assert "source: default" in out


def test_env_get_from_process_environment(cli: Cli,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:8080")
    code, out, _ = cli("env", "get", "OLLAMA_HOST", "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["value"], data["source"], data["default"]) == (
        "0.0.0.0:8080", "environment", "127.0.0.1:11434")


def test_env_get_typo_exits_2_and_suggests(cli: Cli) -> None:
    code, out, err = cli("env", "get", "OLLAMA_HSOT")
    assert code == errors.EXIT_USAGE
    assert out == ""
    assert err.splitlines() == ["ollamactl: error: unknown setting 'OLLAMA_HSOT'",
                                "hint: did you mean OLLAMA_HOST?"]


def test_env_list_json(cli: Cli) -> None:
    code, out, _ = cli("env", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["OLLAMA_KEEP_ALIVE"]["value"] == "5m"
    assert rows["OLLAMA_CONTEXT_LENGTH"]["value"] == "0"     # the VRAM tier, as in Ollama
    assert all(r["source"] != "unset" for r in rows.values())


def test_env_set_validates_before_anything(cli: Cli) -> None:
    code, _, err = cli("env", "set", "OLLAMA_NOPRUNE", "yes-please")
    assert code == errors.EXIT_USAGE
    assert err.splitlines()[0] == ("ollamactl: error: invalid value 'yes-please' for "
                                   "OLLAMA_NOPRUNE: not a boolean (Ollama would silently read it "
                                   "as true)")


def test_version(cli: Cli) -> None:
    code, out, _ = cli("--version")
    assert (code, out) == (0, f"ollamactl version {__version__}\n")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.UsageError("bad"), 2),
        (errors.SettingError("OLLAMA_HOST", "x:y", "port 'y' is not a number", "host:port"), 2),
        (errors.NotAvailableYet("frobnicate"), 2),
        (errors.PrivilegeError("need root", hint="run with sudo"), 1),
        (errors.CommandFailed(["systemctl", "start", "ollama"], 5, "Unit not found."), 1),
        (errors.ServerUnreachable("http://127.0.0.1:11434"), 1),
        (errors.ServiceError("failed"), 1),
        (errors.GpuError("nvml"), 1),
        (errors.ModelError("model 'x' not found"), 1),
        (errors.UnsupportedPlatform("nope"), 1),
    ],
)
def test_error_to_exit_code(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                            error: errors.OllamactlError, code: int) -> None:
    probe = typer.Typer()

    @probe.command()
    def fail(debug: bool = typer.Option(False, "--debug")) -> None:
        raise error

    monkeypatch.setattr(app_module, "app", probe)
    got, _, err = cli()
    assert got == code
    lines = err.splitlines()
    assert lines[0] == f"ollamactl: error: {error.message}"
    assert "Traceback" not in err
    if error.hint:
        assert lines[1] == f"hint: {error.hint}"
    got, _, err = cli("--debug")
    assert got == code and "Traceback (most recent call last)" in err


def test_interrupt_exits_130(cli: Cli,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    probe = typer.Typer()

    @probe.command()
    def wait() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(app_module, "app", probe)
    code, _, err = cli()
    assert code == errors.EXIT_INTERRUPTED and err.strip() == "interrupted"


def test_commands_not_yet_available_exit_2(cli: Cli) -> None:
    from ollamactl.cli.pending import PENDING

    for name in PENDING:
        code, _, err = cli(name, "anything")
        assert code == errors.EXIT_USAGE, name
        assert f"`ollamactl {name}` is not available" in err


def test_every_command_group_is_present(cli: Cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0
    for name in ("install", "update", "uninstall", "env", "doctor", "gpu", "logs", "serve",
                 "start", "stop", "restart", "status", "run", "ps", "list", "show", "pull",
                 "create", "rm", "cp"):
        assert f"  {name} " in out, name
    assert "--install-completion" in out


HEAVY = ("llama_cpp", "fastapi", "uvicorn", "pynvml", "pyudev", "starlette")


@pytest.mark.parametrize("argv", [["--help"], ["env", "list"], ["env", "get", "OLLAMA_HOST"]])
def test_light_commands_import_no_heavy_module(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from ollamactl.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_and_console_script() -> None:
    proc = subprocess.run([sys.executable, "-m", "ollamactl", "--version"], capture_output=True,
                          text=True, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"ollamactl version {__version__}")
    script = os.path.join(os.path.dirname(sys.executable), "ollamactl")
    proc = subprocess.run([script, "env", "get", "NOPE_HOST"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("ollamactl: error: unknown setting")
