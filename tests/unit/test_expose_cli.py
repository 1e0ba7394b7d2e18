"""`ollamactl expose nginx` through the real entry point: print, refuse, --json, --install."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollamactl.cli import main
from ollamactl.expose.nginx import read_marker

TOKEN = "s3cret-token_0123456789"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_prints_the_site(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "expose", "nginx", "--listen", "127.0.0.1:8080",
                           "-b", "127.0.0.1:11434", "-b", "127.0.0.1:11435")
    assert code == 0
    assert read_marker(out) == {"name": "ollama", "listen": "127.0.0.1:8080", "auth": "none",
                                "tls": False, "backends": ["127.0.0.1:11434", "127.0.0.1:11435"]}
    assert "        proxy_set_header Host localhost:11434;" in out.splitlines()


def test_refuses_an_unauthenticated_front_on_the_network(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "expose", "nginx")
    assert code == 2 and out == ""
    assert err.splitlines()[0] == ("ollamactl: error: refusing to put the unauthenticated API "
                                   "on 0.0.0.0:80")
    code, out, _ = run_cli(capsys, "expose", "nginx", "--insecure-no-auth")
    assert code == 0 and "listen 80;" in out


def test_token_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    code, out, _ = run_cli(capsys, "expose", "nginx", "--token-file", str(tokens), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["auth"] == "bearer" and "token_0123456789$" in data["site"]
    code, _, err = run_cli(capsys, "expose", "nginx", "--token-file", str(tmp_path / "none"))
    assert code == 2 and "cannot read token file" in err


def test_token_command_makes_usable_tokens(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "expose", "token")
    assert code == 0
    tokens = tmp_path / "tokens"
    tokens.write_text(out)
    code, out, _ = run_cli(capsys, "expose", "nginx", "--token-file", str(tokens))
    assert code == 0


def test_dry_run_install_under_a_staging_root(capsys: pytest.CaptureFixture[str],
                                              staging_root: Path) -> None:
    (staging_root / "etc/nginx/conf.d").mkdir(parents=True)
    code, out, _ = run_cli(capsys, "--dry-run", "--root", str(staging_root), "expose", "nginx",
                           "--listen", "127.0.0.1:8080", "--install")
    assert code == 0
    assert "would write" in out and "conf.d/ollama.conf" in out
    assert list((staging_root / "etc/nginx/conf.d").iterdir()) == []


def test_install_checks_files_nginx_will_read(capsys: pytest.CaptureFixture[str],
                                              staging_root: Path) -> None:
    (staging_root / "etc/nginx/conf.d").mkdir(parents=True)
    code, _, err = run_cli(capsys, "--root", str(staging_root), "expose", "nginx",
                           "--htpasswd", "/etc/nginx/htpasswd", "--install")
    assert code == 2
    assert f"htpasswd file {staging_root}/etc/nginx/htpasswd does not exist" in err
