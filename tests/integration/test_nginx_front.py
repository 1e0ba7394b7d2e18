"""The nginx front with real parts, all on loopback: Debian's nginx in front of two real
`ollamactl serve` instances, installed by `ollamactl --root <staging> expose nginx --install`
(which runs `nginx -t` and reloads that nginx). Each server has its own store (hard links to
one import of SmolLM2) with an extra name, so /api/tags says which server answered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ollamactl.expose.nginx import build_spec, render_site
from tests.integration.expose_servers import (
    Nginx,
    Server,
    linked_store,
    nginx_test,
    ollamactl,
    shared_store,
)
from tests.integration.server_process import SMOLLM2, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nginx") is None,
                       reason="nginx is not installed (scripts/setup.sh installs it)"),
]

TOKEN = "front-token-0123456789abcdef"
SHORT = {"num_predict": 4, "temperature": 0}


@dataclass
class Front:
    url: str
    affinity_url: str
    servers: dict[str, Server]  # alias -> server
    nginx: Nginx
    site: Path

    def get(self, path: str, *, token: str | None = TOKEN, url: str | None = None,
            **kw: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get((url or self.url) + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

    def served_by(self, response: requests.Response) -> str:
        names = {m["name"] for m in response.json()["models"]}
        (alias,) = [a for a in self.servers if f"{a}:latest" in names]
        return alias


def unload(server: Server) -> None:
    for model in requests.get(server.url + "/api/ps", timeout=10).json()["models"]:
        requests.post(server.url + "/api/generate", json={"model": model["name"],
                                                          "keep_alive": 0}, timeout=60)
    deadline = time.monotonic() + 20
    while requests.get(server.url + "/api/ps", timeout=10).json()["models"]:
        assert time.monotonic() < deadline, "model did not unload"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    base = tmp_path_factory.mktemp("front")
    shared = shared_store(tmp_path_factory.getbasetemp())
    servers: dict[str, Server] = {}
    nginx: Nginx | None = None
    try:
        for alias in ("backend-a", "backend-b"):
            store = linked_store(shared, base / alias, alias)
            servers[alias] = Server(store, base / f"{alias}.log")
        root = base / "root"
        nginx = Nginx(root)
        tokens = base / "tokens"
        tokens.write_text(f"# test tokens\n{TOKEN}\n")
        backends = [a for s in servers.values() for a in ("-b", f"127.0.0.1:{s.port}")]
        ports = {}
        for name, extra in (("ollama", []), ("affinity", ["--affinity"])):
            ports[name] = free_port()
            done = ollamactl("--root", str(root), "expose", "nginx", "--name", name,
                             "--listen", f"127.0.0.1:{ports[name]}", "--token-file", str(tokens),
                             *backends, *extra, "--install")
            assert done.returncode == 0, done.stderr
            assert "nginx reloaded" in done.stdout, done.stdout
            nginx.wait_listening(ports[name])
        yield Front(f"http://127.0.0.1:{ports['ollama']}",
                    f"http://127.0.0.1:{ports['affinity']}", servers, nginx,
                    root / "etc/nginx/sites-available/ollama.conf")
    finally:
        if nginx is not None:
            nginx.stop()
        for server in servers.values():
            server.stop()
    for server in servers.values():
        assert server.proc.poll() is not None
    assert nginx is not None and nginx.proc.poll() is not None


def test_nginx_accepts_every_kind_of_rendered_site(tmp_path: Path) -> None:
    """`nginx -t` on each variant: plain, tokens + affinity, basic auth + TLS, IPv6 listen."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:$apr1$zWm1Ylvb$1ImSwyxuX1l5ZZbpz4WFx/\n")
    specs = {
        "plain": build_spec(listen="127.0.0.1:8080"),
        "tokens": build_spec(name="tokens", listen="8443", tokens=[TOKEN, "AbC.d+e/f~g-h_ij=="],
                             affinity=True, backends=["127.0.0.1:1", "[::1]:2", "localhost:3"]),
        "basic": build_spec(name="basic", htpasswd=htpasswd, tls_cert=cert, tls_key=key,
                            max_body_size="2g", read_timeout_s=3600),
        "v6": build_spec(name="v6", listen="[::1]:8081", tokens=[TOKEN]),
    }
    for name, spec in specs.items():
        site = tmp_path / f"{name}.conf"
        site.write_text(render_site(spec))
        conf = tmp_path / f"nginx-{name}.conf"
        conf.write_text(f"pid {tmp_path}/nginx.pid;\nevents {{}}\n"
                        f"http {{\n  proxy_temp_path {tmp_path}/proxy;\n"
                        f"  client_body_temp_path {tmp_path}/body;\n  include {site};\n}}\n")
        result = nginx_test(conf)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    broken = tmp_path / "broken.conf"
    broken.write_text("events {}\nhttp { upstream x { least_conn } }\n")
    assert nginx_test(broken).returncode != 0


def test_install_refused_by_nginx_is_put_back(front: Front, tmp_path: Path) -> None:
    """A site nginx refuses (here: a certificate it cannot load) leaves the installed site as it
    was and the running front untouched."""
    before = front.site.read_bytes()
    port = front.url.rsplit(":", 1)[1]
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    done = ollamactl("--root", str(front.nginx.root), "expose", "nginx", "--name", "ollama",
                     "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens),
                     "--tls-cert", str(tmp_path / "missing.pem"),
                     "--tls-key", str(tmp_path / "missing.key"), "--install")
    assert done.returncode == 2 and "does not exist" in done.stderr
    bogus = front.nginx.root / "etc/nginx/bogus.pem"  # --install checks it under --root
    bogus.write_text("not a certificate\n")
    done = ollamactl("--root", str(front.nginx.root), "expose", "nginx", "--name", "ollama",
                     "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens),
                     "--tls-cert", "/etc/nginx/bogus.pem", "--tls-key", "/etc/nginx/bogus.pem",
                     "--install")
    assert done.returncode == 1, done.stdout
    assert "put back" in done.stderr
    assert front.site.read_bytes() == before
    assert front.get("/api/version").status_code == 200


def test_requests_are_spread_across_both_servers(front: Front) -> None:
    seen = [front.served_by(front.get("/api/tags")) for _ in range(12)]
    assert set(seen) == {"backend-a", "backend-b"}, seen


def test_auth_is_required(front: Front) -> None:
    for token in (None, "wrong-token-0123456789abcdef", TOKEN.upper()):
        answer = front.get("/api/tags", token=token)
        assert answer.status_code == 401, token
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="ollama"'
        assert answer.json() == {"error": "unauthorized"}
    assert front.get("/api/tags").status_code == 200
    lower = requests.get(front.url + "/api/version", timeout=10,
                         headers={"Authorization": f"bearer {TOKEN}"})
    assert lower.status_code == 200


def test_metrics_are_behind_the_same_token(front: Front) -> None:
    for token in (None, "wrong-token-0123456789abcdef"):
        refused = front.get("/metrics", token=token)
        assert refused.status_code == 401, token
        assert refused.json() == {"error": "unauthorized"}
    scraped = front.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(scraped.text)}
    assert {"ollama_requests", "ollama_queue_depth", "ollama_runtime_info"} <= names


def test_front_rewrites_the_host_header_the_server_checks(front: Front) -> None:
    server = next(iter(front.servers.values()))
    direct = requests.get(server.url + "/api/version", headers={"Host": "evil.example"},
                          timeout=10)
    assert direct.status_code == 403
    proxied = requests.get(front.url + "/api/version", timeout=10, headers={
        "Host": "evil.example", "Authorization": f"Bearer {TOKEN}"})
    assert proxied.status_code == 200


def test_official_client_through_the_front(front: Front) -> None:
    with ollama.Client(host=front.url,
                       headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        names = {m.model for m in client.list().models}
        assert SMOLLM2 in names
        answer = client.generate(model=SMOLLM2, prompt="Say hi", options=SHORT)
        assert answer.done and answer.response
        chunks = list(client.chat(model=SMOLLM2, messages=[{"role": "user", "content": "hi"}],
                                  options=SHORT, stream=True))
        assert chunks[-1].done and len(chunks) > 1
    with ollama.Client(host=front.url) as anonymous, \
            pytest.raises(ollama.ResponseError) as info:
        anonymous.list()
    assert info.value.status_code == 401


@pytest.mark.slow
def test_affinity_keeps_a_model_on_one_server(front: Front) -> None:
    for server in front.servers.values():
        unload(server)
    for _ in range(4):
        answer = requests.post(front.affinity_url + "/api/generate", timeout=120, json={
            "model": SMOLLM2, "prompt": "hi", "options": {"num_predict": 1}},
            headers={"Authorization": f"Bearer {TOKEN}"}, stream=False)
        assert answer.status_code == 200, answer.text
    loaded = {alias: [m["name"] for m in requests.get(s.url + "/api/ps", timeout=10)
                      .json()["models"]] for alias, s in front.servers.items()}
    assert sorted(len(models) for models in loaded.values()) == [0, 1], loaded
    # Requests without a model are still spread.
    seen = {front.served_by(front.get("/api/tags", url=front.affinity_url)) for _ in range(12)}
    assert seen == {"backend-a", "backend-b"}


@pytest.mark.slow
def test_stream_arrives_chunk_by_chunk(front: Front) -> None:
    for server in front.servers.values():  # loaded everywhere: no load time in the timing
        requests.post(server.url + "/api/generate", json={"model": SMOLLM2}, timeout=120)
    started = time.perf_counter()
    arrivals: list[tuple[float, dict[str, object]]] = []
    with requests.post(front.url + "/api/generate", stream=True, timeout=120,
                       headers={"Authorization": f"Bearer {TOKEN}"},
                       json={"model": SMOLLM2, "prompt": "Write a long story about a dragon.",
                             "options": {"num_predict": 32, "temperature": 0}}) as response:
        assert response.status_code == 200
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.headers
        for line in response.iter_lines(chunk_size=1):
            if line:
                arrivals.append((time.perf_counter() - started, json.loads(line)))
    times = [t for t, _ in arrivals]
    final = arrivals[-1][1]
    assert final["done"] and len(arrivals) >= 16
    # The server spent eval_duration producing the tokens; unbuffered, the client sees them
    # spread over (about) that time; buffered, they would all land at once at the end.
    eval_s = int(final["eval_duration"]) / 1e9  # type: ignore[call-overload]
    assert times[-1] - times[0] >= 0.5 * eval_s, (times, eval_s)
    assert len({round(t, 3) for t in times}) >= len(times) // 2


def test_one_server_killed_requests_keep_succeeding(front: Front) -> None:
    """Last in the module: it kills backend-b (SIGKILL, like a crash)."""
    front.servers["backend-b"].kill()
    for _ in range(10):
        answer = front.get("/api/tags")
        assert answer.status_code == 200
        assert front.served_by(answer) == "backend-a"
    generated = requests.post(front.url + "/api/generate", timeout=120, json={
        "model": SMOLLM2, "prompt": "hi", "stream": False, "options": SHORT},
        headers={"Authorization": f"Bearer {TOKEN}"})
    assert generated.status_code == 200 and generated.json()["done"]
