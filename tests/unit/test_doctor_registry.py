"""The registry, exit codes, rendering, --fix, and doctor on this real machine."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from ollamactl.context import Context
from ollamactl.doctor.finding import FAIL, OK, SKIP, WARN, Finding, Fix, exit_code_for
from ollamactl.doctor.fixes import apply_fixes, argv_for, safe_fixes
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.render import render_findings, use_colour
from ollamactl.doctor.suite import all_checks, run_checks
from ollamactl.host import detect
from ollamactl.system import RecordingRunner, SystemRunner
from tests.conftest import Cli


def test_at_least_thirty_checks_with_unique_ids():
    checks = all_checks()
    assert len(checks) >= 30
    assert len({c.id for c in checks}) == len(checks)
    assert {c.area for c in checks} >= {"service", "network", "settings", "storage", "system",
                                        "gpu", "logs"}


def test_doctor_on_this_machine_gives_a_result_or_a_reason_for_every_check(free_port):
    ctx = Context(host=detect(), runner=SystemRunner())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env["OLLAMA_HOST"] = f"127.0.0.1:{free_port}"
    started = time.perf_counter()
    findings = run_checks(Probe(ctx, environ=env))
    elapsed = time.perf_counter() - started
    assert len(findings) == len(all_checks())
    for finding in findings:
        assert finding.status in (OK, WARN, FAIL, SKIP)
        assert finding.summary.strip(), finding.id          # a skip says why
    if not ctx.host.has_systemd:
        unit = next(f for f in findings if f.id == "service.daemon-reload")
        assert (unit.status, unit.summary) == (SKIP, "not systemd (linux-watchdog)")
    reach = next(f for f in findings if f.id == "server.reachable")
    assert reach.status in (WARN, FAIL) and "connection refused" in reach.summary
    assert elapsed < 30   # sanity only; the speed target lives in bench/bench_doctor.py


def test_exit_code_three_only_for_failures():
    assert exit_code_for([Finding("a", OK, "x"), Finding("b", WARN, "y")]) == 0
    assert exit_code_for([Finding("a", SKIP, "x"), Finding("b", FAIL, "y")]) == 3


def test_render_colours_only_on_a_tty_without_no_color():
    findings = [Finding("x.one", FAIL, "broken", "because", Fix("do it", (("true",),), safe=True)),
                Finding("x.two", SKIP, "not here")]
    plain = render_findings(findings, colour=False)
    assert plain[0].startswith("FAIL  x.one  broken")
    assert "      fix (auto with --fix): do it: true" in plain
    assert plain[-1] == "2 checks: 0 ok, 0 warning(s), 1 failed, 1 skipped"
    assert "\x1b[31;1m" in render_findings(findings, colour=True)[0]
    assert use_colour(isatty=True, environ={}) is True
    assert use_colour(isatty=True, environ={"NO_COLOR": ""}) is False
    assert use_colour(isatty=False, environ={}) is False


def test_fix_applies_only_safe_fixes_through_the_runner(ctx, recorder):
    ctx = dataclasses.replace(ctx, root=Path("/"))
    findings = [
        Finding("a", FAIL, "x", fix=Fix("safe", (("systemctl", "daemon-reload"),
                                                 ("systemctl", "restart", "ollama")), safe=True)),
        Finding("b", WARN, "y", fix=Fix("manual", (("rm", "-rf", "/"),))),
        Finding("c", OK, "z", fix=Fix("n/a", (("false",),), safe=True)),
    ]
    recorder.on("systemctl", "daemon-reload").on("systemctl", "restart", returncode=1,
                                                 stderr="failed")
    applied = apply_fixes(ctx, safe_fixes(findings))
    assert recorder.argvs == [("systemctl", "daemon-reload"), ("systemctl", "restart", "ollama")]
    assert [a.ok for a in applied] == [True, False]
    assert argv_for(ctx, ("ollamactl", "start"))[1:] == ("-I", "-m", "ollamactl", "start")


def test_a_staged_fix_acts_on_the_staged_tree_never_on_this_host(ctx, recorder):
    findings = [Finding("a", FAIL, "x", fix=Fix("safe", (("ollamactl", "start"),
                                                          ("systemctl", "restart", "ollama")),
                                                 safe=True))]
    python = argv_for(ctx, ("ollamactl", "start"))[0]
    recorder.on(python)
    (applied_start, refused) = apply_fixes(ctx, safe_fixes(findings))
    assert recorder.argvs == [(python, "-I", "-m", "ollamactl", "--root", str(ctx.root),
                               "start")]
    assert recorder.calls[0].cwd == "/"
    assert applied_start.ok and not refused.ok
    assert refused.error == f"not run under --root {ctx.root}: it would act on this host"


def test_cli_json_and_exit_code(cli: Cli, free_port, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port}")
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "forever")    # a failing check
    result = cli("doctor", "--json", "--only", "settings.process-valid",
                                      "--only", "settings.host-exposure")
    assert result.code == 3
    data = json.loads(result.out)
    # registry order, not command-line order
    assert [f["id"] for f in data["findings"]] == ["settings.host-exposure",
                                                   "settings.process-valid"]
    assert data["findings"][1]["status"] == "fail"
    assert data["summary"]["fail"] == 1


def test_cli_fix_in_dry_run_shows_the_plan(cli: Cli, free_port, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port}")
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "forever")
    result = cli("--dry-run", "doctor", "--fix", "--only",
                                      "settings.process-valid")
    assert result.code == 3
    assert "no safe fix to apply" in result.out   # choosing a value is a human decision


def test_a_check_that_cannot_inspect_becomes_a_finding(ctx, free_port):
    from ollamactl.doctor.registry import CHECKS, Check

    def broken(probe: Probe) -> Finding:
        raise PermissionError(13, "Permission denied")

    CHECKS["zz.broken"] = Check("zz.broken", "broken", "test", broken)
    try:
        probe = Probe(ctx, environ={"OLLAMA_HOST": f"127.0.0.1:{free_port}"})
        (finding,) = run_checks(probe, ["zz.broken"])
    finally:
        del CHECKS["zz.broken"]
    assert finding.status == SKIP and "Permission denied" in finding.summary
    assert isinstance(ctx.runner, RecordingRunner)
