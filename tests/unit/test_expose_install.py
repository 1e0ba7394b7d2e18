"""Installing the nginx site in a staging root: order of steps, refusal undone, layouts.

The runner is the recording one (the OS boundary); the real `nginx -t` and reload run in
tests/integration/test_nginx_front.py.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from ollamactl.context import Context
from ollamactl.errors import CommandFailed, OllamactlError, UsageError
from ollamactl.expose.install import install_site, installed_fronts, nginx_argv
from ollamactl.expose.nginx import build_spec, render_site
from ollamactl.system import PlanRunner, RecordingRunner

TOKEN = "s3cret-token_0123456789"


def debian_nginx(root: Path) -> Path:
    for sub in ("sites-available", "sites-enabled", "conf.d"):
        (root / "etc/nginx" / sub).mkdir(parents=True)
    conf = root / "etc/nginx/nginx.conf"
    conf.write_text("events {}\nhttp { include sites-enabled/*; }\n")
    return conf


def script_nginx(recorder: RecordingRunner, *, test_rc: int = 0, reload_rc: int = 0) -> None:
    recorder.on("nginx", "-v", stderr="nginx version: nginx/1.22.1")
    recorder.on("ln", "-sfn")
    recorder.on("nginx", "-t", returncode=test_rc,
                stderr="nginx: [emerg] unknown directive \"x\"" if test_rc else "")
    recorder.on("nginx", "-s", "reload", returncode=reload_rc,
                stderr="nginx: [error] invalid PID number \"\"" if reload_rc else "")


def test_install_writes_links_tests_then_reloads(ctx: Context, recorder: RecordingRunner,
                                                  staging_root: Path) -> None:
    conf = debian_nginx(staging_root)
    script_nginx(recorder)
    spec = build_spec(listen="0.0.0.0:8443", tokens=[TOKEN])
    report = install_site(ctx, spec)
    site = staging_root / "etc/nginx/sites-available/ollama.conf"
    assert site.read_text() == render_site(spec)
    assert site.stat().st_mode & 0o777 == 0o600  # the tokens are in it
    assert recorder.argvs == [
        ("nginx", "-v"),
        ("ln", "-sfn", "../sites-available/ollama.conf",
         str(staging_root / "etc/nginx/sites-enabled/ollama.conf")),
        ("nginx", "-t", "-q", "-e", "stderr", "-c", str(conf)),
        ("nginx", "-s", "reload", "-e", "stderr", "-c", str(conf)),
    ]
    assert report.changed and report.tested and report.reloaded


def test_refused_site_is_removed_and_nothing_reloaded(ctx: Context, recorder: RecordingRunner,
                                                      staging_root: Path) -> None:
    debian_nginx(staging_root)
    script_nginx(recorder, test_rc=1)
    with pytest.raises(CommandFailed) as info:
        install_site(ctx, build_spec(listen="127.0.0.1:8080"))
    assert "unknown directive" in info.value.message
    assert info.value.hint is not None and "put back" in info.value.hint
    assert not (staging_root / "etc/nginx/sites-available/ollama.conf").exists()
    assert not any(argv[:2] == ("nginx", "-s") for argv in recorder.argvs)


def test_refused_update_puts_the_previous_site_back(ctx: Context, recorder: RecordingRunner,
                                                    staging_root: Path) -> None:
    debian_nginx(staging_root)
    site = staging_root / "etc/nginx/sites-available/ollama.conf"
    site.write_text("# the user's working site\n")
    site.chmod(0o640)
    os.symlink("../sites-available/ollama.conf",
               staging_root / "etc/nginx/sites-enabled/ollama.conf")
    script_nginx(recorder, test_rc=1)
    with pytest.raises(CommandFailed):
        install_site(ctx, build_spec(listen="127.0.0.1:8080"))
    assert site.read_text() == "# the user's working site\n"
    assert site.stat().st_mode & 0o777 == 0o640
    assert (staging_root / "etc/nginx/sites-enabled/ollama.conf").is_symlink()
    assert ("ln", "-sfn") not in [argv[:2] for argv in recorder.argvs]


def test_unchanged_site_is_not_reloaded(ctx: Context, recorder: RecordingRunner,
                                        staging_root: Path) -> None:
    debian_nginx(staging_root)
    spec = build_spec(listen="127.0.0.1:8080")
    (staging_root / "etc/nginx/sites-available/ollama.conf").write_text(render_site(spec))
    os.symlink("../sites-available/ollama.conf",
               staging_root / "etc/nginx/sites-enabled/ollama.conf")
    script_nginx(recorder)
    report = install_site(ctx, spec)
    assert not report.changed and not report.reloaded
    assert recorder.argvs == [("nginx", "-v")]


def test_reload_failure_is_a_note_not_an_error(ctx: Context, recorder: RecordingRunner,
                                               staging_root: Path) -> None:
    debian_nginx(staging_root)
    script_nginx(recorder, reload_rc=1)
    report = install_site(ctx, build_spec(listen="127.0.0.1:8080"))
    assert report.tested and not report.reloaded
    assert any("systemctl start nginx" in note for note in report.notes)


def test_conf_d_layout_without_sites_dirs(ctx: Context, recorder: RecordingRunner,
                                          staging_root: Path) -> None:
    (staging_root / "etc/nginx/conf.d").mkdir(parents=True)
    (staging_root / "etc/nginx/nginx.conf").write_text("events {}\n")
    script_nginx(recorder)
    report = install_site(ctx, build_spec(listen="127.0.0.1:8080"))
    assert report.path == str(staging_root / "etc/nginx/conf.d/ollama.conf")
    assert report.link is None
    assert ("ln", "-sfn") not in [argv[:2] for argv in recorder.argvs]


def test_staging_root_without_nginx_conf_is_staged_only(ctx: Context, recorder: RecordingRunner,
                                                        staging_root: Path) -> None:
    (staging_root / "etc/nginx/conf.d").mkdir(parents=True)
    report = install_site(ctx, build_spec(listen="127.0.0.1:8080"))
    assert recorder.argvs == []
    assert report.changed and not report.tested
    assert "staged only" in report.notes[0]


def test_no_nginx_dir_is_a_usage_error(ctx: Context) -> None:
    with pytest.raises(UsageError, match="no nginx configuration directory"):
        install_site(ctx, build_spec(listen="127.0.0.1:8080"))


def test_nginx_not_installed(ctx: Context, recorder: RecordingRunner,
                             staging_root: Path) -> None:
    debian_nginx(staging_root)
    recorder.on("nginx", "-v", returncode=127, stderr="nginx: command not found")
    with pytest.raises(OllamactlError, match="nginx is not installed"):
        install_site(ctx, build_spec(listen="127.0.0.1:8080"))
    assert not (staging_root / "etc/nginx/sites-available/ollama.conf").exists()


def test_dry_run_changes_nothing(ctx: Context, staging_root: Path) -> None:
    debian_nginx(staging_root)
    probes = RecordingRunner().on("nginx", "-v")
    plan = PlanRunner(probes)
    report = install_site(dataclasses.replace(ctx, runner=plan, dry_run=True),
                          build_spec(listen="127.0.0.1:8080"))
    assert report.changed
    assert not (staging_root / "etc/nginx/sites-available/ollama.conf").exists()
    rendered = plan.render_plan()
    assert "would write" in rendered and "would run    nginx -t" in rendered
    assert probes.argvs == [("nginx", "-v")]


def test_host_root_uses_nginx_defaults(ctx: Context) -> None:
    host = dataclasses.replace(ctx, root=Path("/"))
    assert nginx_argv(host, "-t") == ("nginx", "-t")


def test_installed_fronts_reads_enabled_markers(ctx: Context, staging_root: Path) -> None:
    debian_nginx(staging_root)
    spec = build_spec(name="team", listen="0.0.0.0:443", tokens=[TOKEN])
    (staging_root / "etc/nginx/sites-enabled/team.conf").write_text(render_site(spec))
    (staging_root / "etc/nginx/sites-enabled/default").write_text("server { listen 80; }\n")
    (staging_root / "etc/nginx/sites-available/off.conf").write_text(
        render_site(build_spec(name="off", listen="8080", tokens=[TOKEN])))
    fronts = installed_fronts(ctx)
    assert [(f["name"], f["auth"], f["listen"]) for f in fronts] == [
        ("team", "bearer", "0.0.0.0:443")]
