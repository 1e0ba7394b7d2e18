"""The nginx site: spec validation and what the rendered site contains (checked by nginx itself
in tests/integration/test_nginx_front.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ollamactl.errors import UsageError
from ollamactl.expose import nginx
from ollamactl.expose.nginx import build_spec, parse_token_file, read_marker, render_site

TOKEN = "s3cret-token_0123456789"


def directives(site: str) -> list[str]:
    """The site's directive lines, comments and blank lines removed."""
    return [line.strip() for line in site.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_seed_defaults_proxy_with_the_host_header_the_server_accepts() -> None:
    site = render_site(build_spec(listen="127.0.0.1:8080"))
    lines = directives(site)
    assert "proxy_set_header Host localhost:11434;" in lines
    assert "server 127.0.0.1:11434 max_fails=3 fail_timeout=30s;" in lines
    assert "proxy_pass http://ollamactl_ollama_backends;" in lines
    assert "listen 127.0.0.1:8080;" in lines


def test_streaming_is_kept_streaming() -> None:
    lines = directives(render_site(build_spec(listen="127.0.0.1:8080", read_timeout_s=900)))
    for expected in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";',
                     "proxy_buffering off;", "chunked_transfer_encoding on;",
                     "proxy_read_timeout 900s;", "proxy_send_timeout 900s;"):
        assert expected in lines


def test_host_header_follows_the_backend_port() -> None:
    spec = build_spec(listen="127.0.0.1:8080", backends=["127.0.0.1:12000", "10.0.0.2:12000"])
    assert "proxy_set_header Host localhost:12000;" in directives(render_site(spec))


def test_several_backends_least_conn_with_passive_health_checks() -> None:
    spec = build_spec(listen="127.0.0.1:8080", tokens=[TOKEN], max_fails=2, fail_timeout_s=7,
                      backends=["gpu1", "10.0.0.2:11500", "http://[fd00::3]:11434"])
    lines = directives(render_site(spec))
    assert "least_conn;" in lines
    assert not any(line.startswith("hash ") for line in lines)
    assert [line for line in lines if line.startswith("server ") and "max_fails" in line] == [
        "server gpu1:11434 max_fails=2 fail_timeout=7s;",
        "server 10.0.0.2:11500 max_fails=2 fail_timeout=7s;",
        "server [fd00::3]:11434 max_fails=2 fail_timeout=7s;"]
    assert "proxy_next_upstream error timeout http_502 http_503;" in lines
    assert "proxy_next_upstream_tries 3;" in lines


def test_affinity_hashes_on_the_model_of_the_request() -> None:
    lines = directives(render_site(build_spec(listen="127.0.0.1:8080", affinity=True,
                                              backends=["a:1", "b:2"])))
    assert "hash $ollamactl_ollama_model consistent;" in lines
    assert "least_conn;" not in lines
    assert "map $request_body $ollamactl_ollama_model {" in lines
    assert "default $request_id;" in lines


def test_affinity_regex_extracts_the_model_name() -> None:
    site = render_site(build_spec(listen="127.0.0.1:8080", affinity=True))
    quoted = next(line.strip() for line in site.splitlines() if line.strip().startswith('"~'))
    # nginx unquotes \" to "; the rest is PCRE, which Python's re reads the same here.
    pattern = quoted[2:quoted.rindex('" $1;')].replace('\\"', '"')
    match = re.search(pattern, '{"stream": true, "model" : "smollm2:135m", "prompt": "x"}')
    assert match is not None and match.group(1) == "smollm2:135m"


def test_bearer_tokens_become_exact_case_sensitive_patterns() -> None:
    other = "AAAAbbbbCCCCdddd.+/~"
    spec = build_spec(listen="0.0.0.0:443", tokens=[TOKEN, other])
    site = render_site(spec)
    lines = directives(site)
    assert "if ($ollamactl_ollama_authorized = 0) {" in lines
    assert "return 401 '{\"error\":\"unauthorized\"}\\n';" in lines
    assert 'proxy_set_header Authorization "";' in lines
    patterns = [line.rsplit(" ", 1)[0] for line in lines if line.startswith("\"~^")]
    assert len(patterns) == 2
    for token, quoted in zip((TOKEN, other), patterns, strict=True):
        # nginx unquotes \\ to \ inside "..."; what remains is the PCRE nginx matches with.
        regex = quoted.strip('"').removeprefix("~").replace("\\\\", "\\")
        assert re.fullmatch(regex, f"Bearer {token}")
        assert re.fullmatch(regex, f"bearer {token}")
        assert not re.fullmatch(regex, f"Bearer {token.upper()}")
        assert not re.fullmatch(regex, f"Bearer {token}x")
        assert not re.fullmatch(regex, f"Bearer {token[:-1]}")


def test_basic_auth_and_tls() -> None:
    spec = build_spec(htpasswd=Path("/etc/nginx/ollama.htpasswd"),
                      tls_cert=Path("/etc/ssl/ollama.pem"), tls_key=Path("/etc/ssl/ollama.key"))
    lines = directives(render_site(spec))
    assert "listen 443 ssl;" in lines
    assert "ssl_certificate /etc/ssl/ollama.pem;" in lines
    assert "ssl_certificate_key /etc/ssl/ollama.key;" in lines
    assert 'auth_basic "ollama";' in lines
    assert "auth_basic_user_file /etc/nginx/ollama.htpasswd;" in lines
    assert spec.listen.client_url == "https://127.0.0.1:443"


def test_body_size_limit() -> None:
    lines = directives(render_site(build_spec(listen="127.0.0.1:80", max_body_size="2g")))
    assert "client_max_body_size 2g;" in lines


def test_marker_says_where_it_listens_and_how_it_authenticates() -> None:
    spec = build_spec(listen="8080", tokens=[TOKEN], backends=["127.0.0.1:11434", "h2:1"])
    marker = read_marker(render_site(spec))
    assert marker == {"name": "ollama", "listen": "0.0.0.0:8080", "auth": "bearer",
                      "tls": False, "backends": ["127.0.0.1:11434", "h2:1"]}
    assert TOKEN not in str(marker)
    assert "listen 8080;" in directives(render_site(spec))
    assert read_marker("server {}\n") is None


def test_token_file_skips_comments_and_dedups() -> None:
    text = f"# team tokens\n\n{TOKEN}\n  {TOKEN}  \nZZZZZZZZZZZZZZZZ==\n"
    assert parse_token_file(text) == (TOKEN, "ZZZZZZZZZZZZZZZZ==")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "short\n", "has space inside!!!!\n",
                                  'quote"inside-the-token\n', "semi;colon-in-the-token\n"])
def test_token_file_refuses_bad_tokens(text: str) -> None:
    with pytest.raises(UsageError):
        parse_token_file(text)


@pytest.mark.parametrize("kwargs", [
    {"name": "../etc"}, {"name": "Has Space"},
    {"tls_cert": Path("/c.pem")},
    {"tokens": [TOKEN], "htpasswd": Path("/h")},
    {"backends": []}, {"backends": ["https://h:1"]}, {"backends": ["0.0.0.0:11434"]},
    {"backends": ["h:99999"]}, {"listen": "http://h:1"}, {"listen": "h:x"},
    {"max_body_size": "10 m"}, {"max_body_size": "0"}, {"read_timeout_s": 0},
    {"server_name": "a;b"}, {"htpasswd": Path("relative/file")},
    {"htpasswd": Path("/a b")},
])
def test_build_spec_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        build_spec(**kwargs)  # type: ignore[arg-type]


def test_site_variables_are_per_site() -> None:
    spec = build_spec(name="team-a", listen="127.0.0.1:80", tokens=[TOKEN])
    assert spec.var_prefix == "ollamactl_team_a"
    assert "map $http_authorization $ollamactl_team_a_authorized {" in directives(
        render_site(spec))
    assert nginx.TEMPLATE.startswith("nginx/")
