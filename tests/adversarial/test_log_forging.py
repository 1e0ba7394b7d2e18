"""Log forging: request text must not write records, and doctor must not act on it.

Request paths and option names reach the server's log. Percent-decoded, ``%0a`` (or ``\\r``,
U+2028, NEL) would start a line that reads like the runner's ``level=ERROR msg=CUDA error:
unknown error``, and doctor's after-suspend check would offer its "safe" fix on it. A real server
on loopback gets the attacks; its log file is then read as it is, and fed to doctor.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from ollamactl.context import Context
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store
from ollamactl.service.watchdog import RotatingLog
from ollamactl.service.windows import open_server_log
from ollamactl.system import RecordingRunner
from tests.adversarial.conftest import Reliability
from tests.doctor_helpers import INSTALLED_UNIT, make_probe, one
from tests.gguf_builder import tiny_model
from tests.gpu_fakes import FakeNvml, h100
from tests.integration.server_process import running_server

pytestmark = [pytest.mark.integration]

FORGED = ("time=2025-01-01 00:00:00,000 level=ERROR request=- source=ollamactl.server "
          "msg=CUDA error: unknown error")
BREAKS = ("\n", "\r", "\r\n", "\u2028", "\u0085", "\x0b", "\x1c", "\x1b[2K\r")
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _encoded(text: str) -> str:
    return "".join(c if c.isalnum() or c in "/-._:" else
                   "".join(f"%{b:02X}" for b in c.encode()) for c in text)


@dataclass(frozen=True)
class Attacked:
    """The log of a server that got the forging requests, and how many were sent."""

    log: Path
    requests: int


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    root = tmp_path_factory.mktemp("forging")
    store = Store(root / "models")
    create_model(store, "tiny", model_digest=store.import_file(tiny_model(root / "tiny.gguf")))
    sent = 0
    with running_server(root / "models", {}, root / "server.log") as (url, _):
        for brk in BREAKS:
            # the path as sent on the wire: percent-encoded, decoded by the server
            assert requests.get(f"{url}/api/tags{_encoded(brk + FORGED)}",
                                timeout=10).status_code == 404
            options = {brk + FORGED: 1, "top_k": "not a number"}   # warned about, then a 400
            assert requests.post(f"{url}/api/generate", json={
                "model": "tiny", "prompt": "hi", "options": options}, timeout=30
            ).status_code == 400
            sent += 2
    yield Attacked(root / "server.log", sent)


def test_request_text_writes_no_record(attacked: Attacked, reliability: Reliability) -> None:
    """Every line is one record the server wrote; the forged text is in it, escaped."""
    reliability.tried(attacked.requests)
    text = attacked.log.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")[:-1]
    assert not CONTROL.search(text), "a control character or line separator in the log"
    assert not [line for line in lines if re.match(r"time=\S+ \S+ level=ERROR ", line)]
    assert not [line for line in lines if not re.match(
        r"time=\S+ \S+ level=[A-Z]+ request=\S+ source=[\w.]+ msg=\S", line)]
    access = [line for line in lines if "source=ollamactl.request" in line and
              re.search(r"msg=(GET /api/tags%\S+|POST /api/generate) status=", line)]
    assert len(access) == attacked.requests
    assert sum("level%3DERROR%20request%3D-%20source%3D" in line for line in lines) == \
        attacked.requests   # the path and the option name, percent-encoded


def test_doctor_does_not_act_on_request_text(attacked: Attacked, ctx: Context,
                                             recorder: RecordingRunner, free_port: int,
                                             reliability: Reliability) -> None:
    """The after-suspend check reads that log after a suspend: no finding, no reload fix. The
    same words written by the runner itself (plain output, or Ollama's own record) still
    count."""
    reliability.tried(attacked.requests)
    stats = ctx.path("/sys/power/suspend_stats/success")
    stats.parent.mkdir(parents=True)
    stats.write_text("2\n")
    log = attacked.log.read_text(encoding="utf-8", errors="replace")
    gin = '[GIN] 2025/01/31 - 12:00:00 | 404 | 1ms | 127.0.0.1 | GET "/x CUDA error: unknown error"'
    quiet = make_probe(ctx, recorder, port=free_port, unit=INSTALLED_UNIT,
                       nvml=FakeNvml([h100()]), log=log + gin + "\n")
    assert one(quiet, "gpu.after-suspend").status == "ok"
    for runner_line in ("ggml_cuda_init: failed to initialize CUDA: unknown error\n"
                        "CUDA error: unknown error",
                        'time=2025-01-31T12:00:00.000+01:00 level=INFO source=gpu.go:602 '
                        'msg="no compatible GPUs were discovered"'):
        recorder2 = RecordingRunner()
        ctx2 = Context(host=ctx.host, runner=recorder2, root=ctx.root)
        real = make_probe(ctx2, recorder2, port=free_port, unit=INSTALLED_UNIT,
                          nvml=FakeNvml([h100()]), log=log + runner_line + "\n")
        finding = one(real, "gpu.after-suspend")
        assert finding.status == "fail" and finding.fix is not None and finding.fix.safe


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_log_files_are_not_world_readable(attacked: Attacked, tmp_path: Path,
                                          reliability: Reliability) -> None:
    """The server's log file (whoever created it), the watchdog's log and the Windows
    server.log are 0640; a world-readable log from before is narrowed, never widened."""
    reliability.tried(4)
    assert _mode(attacked.log) == 0o640
    old = os.umask(0o002)
    try:
        watchdog = RotatingLog(tmp_path / "ollama.log", max_bytes=64)
        for n in range(4):
            watchdog.write(f"line {n} " + "x" * 40)
        server_log = open_server_log(tmp_path / "server.log")
        server_log.close()
        stale = tmp_path / "stale.log"
        stale.write_text("old\n")
        stale.chmod(0o666)
        RotatingLog(stale).write("new")
        private = tmp_path / "private.log"
        private.write_text("")
        private.chmod(0o600)
        RotatingLog(private).write("new")
    finally:
        os.umask(old)
    rotated = [_mode(p) for p in sorted(tmp_path.glob("ollama.log*"))]
    assert len(rotated) > 1 and set(rotated) == {0o640}
    assert _mode(tmp_path / "server.log") == 0o640
    assert _mode(stale) == 0o640 and _mode(private) == 0o600
