"""Service, network and settings checks against a scripted `systemctl show` and staged files."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator

import pytest

from ollamactl import __version__
from tests.doctor_helpers import INSTALLED_UNIT, make_probe, one
from tests.loopback import serving


def test_active_enabled_unit_is_ok(ctx, recorder, free_port):
    probe = make_probe(ctx, recorder, port=free_port, unit=INSTALLED_UNIT)
    finding = one(probe, "service.unit")
    assert finding.status == "ok" and "active (running), enabled" in finding.summary
    assert all(not c.mutates for c in recorder.calls)   # probes only


def test_failed_unit_fails_with_a_safe_restart(ctx, recorder, free_port):
    unit = {**INSTALLED_UNIT, "ActiveState": "failed"}
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "service.unit")
    assert finding.status == "fail" and finding.fix is not None and finding.fix.safe


def test_missing_unit_fails(ctx, recorder, free_port):
    finding = one(make_probe(ctx, recorder, port=free_port, unit={"LoadState": "not-found"}),
                  "service.unit")
    assert finding.status == "fail" and finding.fix.commands == (("ollamactl", "install"),)


def test_need_daemon_reload_warns_with_reload_and_restart(ctx, recorder, free_port):
    unit = {**INSTALLED_UNIT, "NeedDaemonReload": "yes"}
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "service.daemon-reload")
    assert finding.status == "warn"
    assert finding.fix.commands == (("systemctl", "daemon-reload"),
                                    ("systemctl", "restart", "ollama"))


def test_settings_edited_into_the_unit_warn(ctx, recorder, free_port):
    unit_file = ctx.path("/etc/systemd/system/ollama.service")
    unit_file.parent.mkdir(parents=True)
    unit_file.write_text("[Service]\nExecStart=/usr/bin/ollama serve\n"
                         "Environment=\"OLLAMA_HOST=0.0.0.0\"\n")
    finding = one(make_probe(ctx, recorder, port=free_port, unit=INSTALLED_UNIT),
                  "service.unit-edited")
    assert finding.status == "warn" and "OLLAMA_HOST=0.0.0.0" in finding.detail


def test_running_server_with_stale_environment_warns(ctx, recorder, free_port):
    proc = ctx.path("/proc/4321")
    proc.mkdir(parents=True)
    proc.joinpath("environ").write_bytes(b"PATH=/usr/bin\0OLLAMA_KEEP_ALIVE=5m\0")
    unit = {**INSTALLED_UNIT, "MainPID": "4321", "Environment": "OLLAMA_KEEP_ALIVE=1h"}
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "service.env-drift")
    assert finding.status == "warn" and "OLLAMA_KEEP_ALIVE" in finding.summary
    assert finding.fix.safe


def test_private_devices_hides_the_gpu(ctx, recorder, free_port):
    unit = {**INSTALLED_UNIT, "PrivateDevices": "yes"}
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "service.gpu-sandbox")
    assert finding.status == "fail" and "PrivateDevices=yes" in finding.summary


def test_protect_home_hides_models_under_home(ctx, recorder, free_port):
    unit = {**INSTALLED_UNIT, "ProtectHome": "yes",
            "Environment": "OLLAMA_MODELS=/home/alice/models"}
    probe = make_probe(ctx, recorder, port=free_port, unit=unit, environ={})
    finding = one(probe, "models.sandbox")
    assert finding.status == "fail" and "ProtectHome=yes" in finding.summary
    allowed = {**unit, "ReadWritePaths": "/home/alice/models"}
    recorder2 = type(recorder)()
    ctx2 = type(ctx)(host=ctx.host, runner=recorder2, root=ctx.root)
    assert one(make_probe(ctx2, recorder2, port=free_port, unit=allowed),
               "models.sandbox").status == "ok"


def test_hardening_score_is_parsed(ctx, recorder, free_port):
    recorder.on("systemd-analyze", "security",
                stdout="→ Overall exposure level for ollama.service: 9.2 UNSAFE 😨\n")
    finding = one(make_probe(ctx, recorder, port=free_port, unit=INSTALLED_UNIT),
                  "service.hardening")
    assert finding.status == "fail" and finding.summary.startswith("exposure 9.2 UNSAFE")


def test_without_systemd_service_checks_skip_with_the_reason(ctx, recorder, free_port):
    import dataclasses

    no_systemd = dataclasses.replace(ctx, host=dataclasses.replace(ctx.host, init_system="none"))
    probe = make_probe(no_systemd, recorder, port=free_port)
    for check_id in ("service.daemon-reload", "service.gpu-sandbox", "models.sandbox"):
        finding = one(probe, check_id)
        assert (finding.status, finding.summary) == ("skip", "systemd is not PID 1")


@pytest.mark.parametrize(("host", "status"), [
    ("127.0.0.1:11434", "ok"), ("0.0.0.0", "warn"), ("192.168.1.20:11434", "warn"),
])
def test_host_exposure(ctx, recorder, free_port, host, status):
    unit = {**INSTALLED_UNIT, "Environment": f"OLLAMA_HOST={host}"}
    assert one(make_probe(ctx, recorder, port=free_port, unit=unit),
               "settings.host-exposure").status == status


@pytest.mark.parametrize(("origins", "status"), [
    ("*", "fail"), ("chrome-extension://*", "warn"), ("https://app.example.com", "ok"),
    ("app.example.com", "fail"),
])
def test_origins(ctx, recorder, free_port, origins, status):
    probe = make_probe(ctx, recorder, port=free_port, environ={"OLLAMA_ORIGINS": origins})
    assert one(probe, "settings.origins").status == status


def test_proxy_variables(ctx, recorder, free_port):
    unit = {**INSTALLED_UNIT, "Environment": "HTTP_PROXY=http://proxy:3128"}
    assert one(make_probe(ctx, recorder, port=free_port, unit=unit), "network.proxy").status \
        == "warn"
    recorder2 = type(recorder)()
    ctx2 = type(ctx)(host=ctx.host, runner=recorder2, root=ctx.root)
    good = {**INSTALLED_UNIT, "Environment": "HTTPS_PROXY=http://proxy:3128 "
            "NO_PROXY=localhost,127.0.0.1"}
    assert one(make_probe(ctx2, recorder2, port=free_port, unit=good), "network.proxy").status \
        == "ok"


def test_invalid_and_unknown_settings(ctx, recorder, free_port):
    unit = {**INSTALLED_UNIT, "Environment": "OLLAMA_KEEP_ALIVE=forever OLLAMA_NOPRUNE=yes"}
    probe = make_probe(ctx, recorder, port=free_port, unit=unit,
                       environ={"OLLAMA_MODLES": "/srv/models", "OLLAMA_NUM_PARALLEL": "4"})
    bad = one(probe, "settings.service-valid")
    assert bad.status == "fail" and "OLLAMA_KEEP_ALIVE='forever'" in bad.detail
    assert "OLLAMA_NOPRUNE='yes'" in bad.detail
    unknown = one(probe, "settings.unknown")
    assert unknown.status == "warn" and "did you mean OLLAMA_MODELS?" in unknown.detail
    shell = one(probe, "settings.shell-only")
    assert shell.status == "warn" and "OLLAMA_NUM_PARALLEL" in shell.summary


@pytest.fixture
def fake_server(request: pytest.FixtureRequest) -> Iterator[int]:
    """A tiny HTTP server on loopback answering like Ollama's `/` and `/api/*`; its
    `/api/version` body is the test's indirect parameter (Ollama 0.12.0 by default)."""
    version = getattr(request, "param", {"version": "0.12.0"})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = {"/": b"Ollama is running",
                    "/api/version": json.dumps(version).encode(),
                    "/api/ps": json.dumps({"models": [{"name": "smollm2:135m", "size": 100,
                                                       "size_vram": 0}]}).encode(),
                    }.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as port:
        yield port


def test_reachable_server_and_its_version(ctx, recorder, fake_server):
    probe = make_probe(ctx, recorder, port=fake_server, unit=INSTALLED_UNIT)
    reach = one(probe, "server.reachable")
    assert reach.status == "ok" and "Ollama is running" in reach.summary
    assert one(probe, "service.version").summary == "server: Ollama 0.12.0"
    assert one(probe, "gpu.offload").summary == \
        "no usable GPU: models run on the CPU by design"


@pytest.mark.parametrize("fake_server", [{"version": "0.33.0", "ollamactl": "0.0.1"}],
                         indirect=True)
def test_a_server_running_another_ollamactl_is_a_stale_process(ctx, recorder, fake_server):
    finding = one(make_probe(ctx, recorder, port=fake_server, unit=INSTALLED_UNIT),
                  "service.version")
    assert finding.status == "warn"
    assert finding.summary.startswith("the server runs ollamactl 0.0.1, installed is ")
    assert finding.fix.commands == (("systemctl", "restart", "ollama"),)


@pytest.mark.parametrize("fake_server", [{"version": "0.33.0", "ollamactl": __version__}],
                         indirect=True)
def test_a_server_running_this_ollamactl_is_current(ctx, recorder, fake_server):
    finding = one(make_probe(ctx, recorder, port=fake_server, unit=INSTALLED_UNIT),
                  "service.version")
    assert finding.status == "ok"
    assert finding.summary == f"server: ollamactl {__version__}, Ollama API 0.33.0"


def test_unreachable_server_with_running_service_fails(ctx, recorder, free_port):
    finding = one(make_probe(ctx, recorder, port=free_port, unit=INSTALLED_UNIT),
                  "server.reachable")
    assert finding.status == "fail" and "connection refused" in finding.summary


@pytest.mark.parametrize(("fake_server", "status", "words", "absent"), [
    ({"version": "0.12.0"}, "fail", ["CVE-2026-7482", "CVE-2026-7020"], ["CVE-2024-28224"]),
    ({"version": "0.1.28"}, "fail", ["CVE-2024-28224", "CVE-2024-45436", "CVE-2026-7482"], []),
    ({"version": "0.17.1"}, "fail", ["CVE-2026-7020"], ["CVE-2026-7482"]),
    ({"version": "0.33.0"}, "ok", ["every listed security fix"], []),
    ({"version": "0.0.0"}, "warn", ["development build"], []),
    ({"version": "0.33.0", "ollamactl": __version__}, "ok", ["ollamactl's own server"], []),
], indirect=["fake_server"])
def test_a_real_ollama_below_a_security_fix_fails(ctx, recorder, fake_server, status, words,
                                                  absent):
    """C38: Ollama's version against the releases that fixed published flaws."""
    finding = one(make_probe(ctx, recorder, port=fake_server, unit=INSTALLED_UNIT),
                  "service.security-floor")
    assert finding.status == status
    assert all(w in finding.summary for w in words)
    assert not any(w in finding.summary for w in absent)
    if status == "fail":
        assert "at least 0.20.3" in finding.fix.summary
