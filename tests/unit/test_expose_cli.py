"""`ollamactl expose nginx` through the real entry point: print, refuse, --json, --install."""

from __future__ import annotations

import json
from pathlib import Path

from ollamactl.expose.nginx import read_marker
from tests.conftest import Cli

TOKEN = "s3cret-token_0123456789"


def test_prints_the_site(cli: Cli) -> None:
    code, out, _ = cli("expose", "nginx", "--listen", "127.0.0.1:8080",
                           "-b", "127.0.0.1:11434", "-b", "127.0.0.1:11435")
    assert code == 0
    assert read_marker(out) == {"name": "ollama", "listen": "127.0.0.1:8080", "auth": "none",
                                "tls": False, "backends": ["127.0.0.1:11434", "127.0.0.1:11435"]}
    assert "        proxy_set_header Host localhost:11434;" in out.splitlines()


def test_refuses_an_unauthenticated_front_on_the_network(
        cli: Cli) -> None:
    code, out, err = cli("expose", "nginx")
    assert code == 2 and out == ""
    assert err.splitlines()[0] == ("ollamactl: error: refusing to put the unauthenticated API "
                                   "on 0.0.0.0:80")
    code, out, _ = cli("expose", "nginx", "--insecure-no-auth")
    assert code == 0 and "listen 80;" in out


def test_token_file(cli: Cli, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    code, out, _ = cli("expose", "nginx", "--token-file", str(tokens), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["auth"] == "bearer" and "token_0123456789$" in data["site"]
    code, _, err = cli("expose", "nginx", "--token-file", str(tmp_path / "none"))
    assert code == 2 and "cannot read token file" in err


def test_token_command_makes_usable_tokens(cli: Cli,
                                           tmp_path: Path) -> None:
    code, out, _ = cli("expose", "token")
    assert code == 0
    tokens = tmp_path / "tokens"
    tokens.write_text(out)
    code, out, _ = cli("expose", "nginx", "--token-file", str(tokens))
    assert code == 0


def test_dry_run_install_under_a_staging_root(cli: Cli,
                                              staging_root: Path) -> None:
    (staging_root / "etc/nginx/conf.d").mkdir(parents=True)
    code, out, _ = cli("--dry-run", "--root", str(staging_root), "expose", "nginx",
                           "--listen", "127.0.0.1:8080", "--install")
    assert code == 0
    assert "would write" in out and "conf.d/ollama.conf" in out
    assert list((staging_root / "etc/nginx/conf.d").iterdir()) == []


def test_install_checks_files_nginx_will_read(cli: Cli,
                                              staging_root: Path) -> None:
    (staging_root / "etc/nginx/conf.d").mkdir(parents=True)
    code, _, err = cli("--root", str(staging_root), "expose", "nginx",
                           "--htpasswd", "/etc/nginx/htpasswd", "--install")
    assert code == 2
    assert f"htpasswd file {staging_root}/etc/nginx/htpasswd does not exist" in err
