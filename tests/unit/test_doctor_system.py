"""Machine and storage checks over staged /proc files and a staged model store."""

from __future__ import annotations

import json
import os

from tests.doctor_helpers import make_probe, one

HEX = "a" * 64


def _write(ctx, path: str, text: str) -> None:
    target = ctx.path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_cpu_flags(ctx, recorder, free_port):
    _write(ctx, "/proc/cpuinfo", "processor : 0\nflags : fpu sse sse2 hypervisor\n")
    finding = one(make_probe(ctx, recorder, port=free_port), "system.cpu-avx")
    assert finding.status == "warn" and "no AVX in a VM" in finding.summary
    assert "only the baseline CPU library" in finding.summary
    assert "host-passthrough" in finding.fix.summary


def test_noexec_tmp_fails_with_tmpdir_fix(ctx, recorder, free_port):
    _write(ctx, "/proc/self/mounts", "/dev/sda1 / ext4 rw 0 0\n"
                                     "tmpfs /tmp tmpfs rw,nosuid,nodev,noexec 0 0\n")
    finding = one(make_probe(ctx, recorder, port=free_port), "system.tmp-noexec")
    assert finding.status == "fail" and "noexec" in finding.summary
    assert ("ollamactl", "env", "set", "OLLAMA_TMPDIR", "/var/lib/ollama/tmp") in \
        finding.fix.commands


def test_memory_against_the_smallest_model(ctx, recorder, free_port):
    models = ctx.root / "models"
    _write_model(models, "library/big", "latest", size=64 * 1024**3)
    _write(ctx, "/proc/meminfo", "MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\n")
    probe = make_probe(ctx, recorder, port=free_port, environ={"OLLAMA_MODELS": "/models"})
    finding = one(probe, "system.memory")
    assert finding.status == "warn" and "less than the smallest model" in finding.summary


def _write_model(models, name: str, tag: str, *, size: int, digest: str = HEX) -> None:
    manifest = models / "manifests/registry.ollama.ai" / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
         "size": size}]}))


def test_model_store_consistency_and_blob_names(ctx, recorder, free_port):
    models = ctx.root / "models"
    _write_model(models, "library/smollm2", "135m", size=100)
    blobs = models / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"sha256-{HEX}").write_bytes(b"x" * 100)
    probe = make_probe(ctx, recorder, port=free_port, environ={"OLLAMA_MODELS": "/models"})
    assert one(probe, "models.store").status == "ok"
    assert one(probe, "models.blob-names").status == "ok"
    (blobs / f"sha256-{'b' * 64}").write_bytes(b"y" * 1000)          # orphan
    (blobs / f"sha256-{'c' * 64}-partial").write_bytes(b"z" * 10)    # partial download
    (blobs / "..evil").write_text("")                                # stray name
    warn = one(probe, "models.store")
    assert warn.status == "warn" and "1 partial download(s), 1 unused blob(s)" in warn.summary
    assert one(probe, "models.blob-names").status == "fail"
    (blobs / f"sha256-{HEX}").unlink()
    assert one(probe, "models.store").summary == \
        "model(s) with missing blobs: registry.ollama.ai/library/smollm2:135m"


def test_models_dir_parent_not_traversable_by_service_user(ctx, recorder, free_port):
    from tests.doctor_helpers import INSTALLED_UNIT

    locked = ctx.root / "srv/locked"
    (locked / "models").mkdir(parents=True)
    os.chmod(locked, 0o700)
    unit = {**INSTALLED_UNIT, "User": "nobody",
            "Environment": "OLLAMA_MODELS=/srv/locked/models"}
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "models.dir")
    assert finding.status == "fail" and "nobody cannot traverse" in finding.summary
    assert finding.fix.commands == (("chmod", "o+x", "/srv/locked"),)
    os.chmod(locked, 0o755)
    (locked / "models").chmod(0o700)
    finding = one(make_probe(ctx, recorder, port=free_port, unit=unit), "models.dir")
    assert finding.status == "fail" and finding.summary == \
        "nobody cannot write /srv/locked/models"


def test_port_held_by_a_foreign_process(ctx, recorder, free_port):
    # /proc/net/tcp with a LISTEN socket on the port, and the pid holding its inode
    _write(ctx, "/proc/net/tcp",
           "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
           "timeout inode\n"
           f"   0: 0100007F:{free_port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 "
           "00000000     0        0 99123 1 0000000000000000 100 0 0 10 0\n")
    fd_dir = ctx.path("/proc/2222/fd")
    fd_dir.mkdir(parents=True)
    (fd_dir / "3").symlink_to("socket:[99123]")
    _write(ctx, "/proc/2222/comm", "nginx\n")
    finding = one(make_probe(ctx, recorder, port=free_port), "server.port-owner")
    assert finding.status == "fail" and "2222 (nginx)" in finding.summary


def test_free_port_is_ok(ctx, recorder, free_port):
    _write(ctx, "/proc/net/tcp", "  sl  local_address\n")
    assert one(make_probe(ctx, recorder, port=free_port), "server.port-owner").summary == \
        f"port {free_port} is free"


def test_lan_check_skips_on_loopback(ctx, recorder, free_port):
    finding = one(make_probe(ctx, recorder, port=free_port), "network.lan-reachability")
    assert (finding.status, finding.summary) == (
        "skip", "bound to loopback only: other hosts cannot reach it")


def _runtime_state(**changes):
    """What `python -m ollamactl.runtime.builds.serving` prints for a portable runtime on a
    Xeon whose AMX library crashed in the self-test and whose AVX-512 library passed."""
    zen4 = {"name": "cpu_avx512_vbmi_vnni_bf16", "tag": "zen4", "present": True,
            "runs_here": True, "missing": [], "needs_probe": False,
            "instruction_set": "SSE42, AVX, AVX512", "selftest": {"ok": True, "seconds": 4.8}}
    amx = {**zen4, "name": "cpu_amx", "tag": "sapphirerapids", "needs_probe": True,
           "selftest": {"ok": False, "signal": "SIGILL", "detail": "crashed: SIGILL"}}
    state = {
        "prefix": "/opt/ollamactl/venv", "library_dir": "/opt/ollamactl/venv/lib/llama_cpp/lib",
        "build": {"llama_cpp_python": "0.3.36", "key": "94973687ea868aab"},
        "cpu": {"model": "Intel(R) Xeon(R) Processor", "arch": "x86_64"},
        "variants": [zen4, amx], "builtin_selftest": None, "requested": "",
        "serving": {"name": zen4["name"], "tag": "zen4", "reason": "the best variant",
                    "describe": "cpu_avx512_vbmi_vnni_bf16 (libggml-cpu-zen4.so): the best "
                                "variant this CPU runs (self-tested)"}}
    state.update(changes)
    return state


def _cpu_runtime(ctx, recorder, free_port, state):
    import sys

    recorder.on(sys.executable, "-I", "-m", "ollamactl.runtime.builds.serving",
                stdout=json.dumps(state))
    return one(make_probe(ctx, recorder, port=free_port), "system.cpu-runtime")


def test_cpu_runtime_names_the_library_that_serves_and_the_one_that_crashed(
        ctx, recorder, free_port):
    finding = _cpu_runtime(ctx, recorder, free_port, _runtime_state())
    assert finding.status == "ok"
    assert "libggml-cpu-zen4.so" in finding.summary and "self-test passed" in finding.summary
    assert "cpu_amx (crashed: SIGILL)" in finding.detail


def test_cpu_runtime_not_self_tested_here_warns_with_the_self_test(ctx, recorder, free_port):
    state = _runtime_state()
    for variant in state["variants"]:
        variant["selftest"] = None
    finding = _cpu_runtime(ctx, recorder, free_port, state)
    assert finding.status == "warn" and "not self-tested" in finding.summary
    assert ("ollamactl", "runtime", "selftest") in finding.fix.commands


def test_cpu_runtime_a_forced_library_the_cpu_lacks_fails(ctx, recorder, free_port):
    state = _runtime_state(error="OLLAMA_LLM_LIBRARY=cpu_amx uses AMX, which has not passed "
                                 "the self-test on this machine")
    del state["serving"]
    finding = _cpu_runtime(ctx, recorder, free_port, state)
    assert finding.status == "fail" and "OLLAMA_LLM_LIBRARY=cpu_amx" in finding.summary
    assert ("ollamactl", "env", "unset", "OLLAMA_LLM_LIBRARY") in finding.fix.commands


def test_cpu_runtime_a_build_not_made_by_ollamactl_warns_of_sigill(ctx, recorder, free_port):
    state = _runtime_state(build=None, variants=[], builtin_selftest=None)
    state["serving"] = {"name": "cpu", "tag": "builtin", "reason": "no variants",
                        "describe": "CPU backend built into the runtime"}
    finding = _cpu_runtime(ctx, recorder, free_port, state)
    assert finding.status == "warn" and "-march=native" in finding.summary
    assert ("bash", "scripts/setup.sh") in finding.fix.commands
