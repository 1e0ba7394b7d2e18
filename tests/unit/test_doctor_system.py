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
    assert finding.status == "fail" and "no AVX in a VM" in finding.summary
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
