"""Templates render from the checkout, and ship inside the wheel loaded the same way."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import jinja2
import pytest

from ollamactl import templating

REPO = Path(__file__).resolve().parents[2]


def test_systemd_quote() -> None:
    assert templating.systemd_quote("/usr/bin/ollamactl") == "/usr/bin/ollamactl"
    assert templating.systemd_quote("OLLAMA_HOST=0.0.0.0") == "OLLAMA_HOST=0.0.0.0"
    assert templating.systemd_quote('a "b" 50%') == '"a \\"b\\" 50%%"'
    assert templating.systemd_quote("50%h") == '"50%%h"'  # never a bare specifier


def test_render_from_checkout_is_strict() -> None:
    text = templating.render("systemd/ollama.service.j2", exec_argv=["/opt/x y/ollamactl", "serve"],
                             user="ollama", group="ollama", environment=[("A", "1 2")])
    assert text.startswith(f"# {templating.MANAGED_HEADER}\n")
    assert 'ExecStart="/opt/x y/ollamactl" serve' in text
    assert 'Environment="A=1 2"' in text
    with pytest.raises(jinja2.UndefinedError):
        templating.render("systemd/ollama.service.j2", user="ollama")


@pytest.mark.integration
@pytest.mark.slow
def test_wheel_ships_templates_and_loads_them(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True)
    (wheel,) = wheels.glob("ollamactl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ollamactl/templates/systemd/ollama.service.j2" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True)
    probe = ("import ollamactl, ollamactl.templating as t; print(ollamactl.__file__); "
             "print(t.template_root()); "
             "print(t.render('systemd/ollama.service.j2', exec_argv=['x'], user='u', group='g', "
             "environment=[]).splitlines()[0])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=tmp_path, env={"PYTHONPATH": str(site)})
    module_file, root, first_line = proc.stdout.splitlines()
    assert module_file.startswith(str(site))
    assert root == str(site / "ollamactl" / "templates")
    assert first_line == f"# {templating.MANAGED_HEADER}"


def test_plist_and_xml_templates_autoescape() -> None:
    env = templating._environment()
    template = env.from_string("<string>{{ value }}</string>")
    assert template.render(value="a<b&c") == "<string>a<b&c</string>"   # plain strings: off
    for name in ("launchd/ollama.plist.j2", "windows/task.xml.j2", "x.plist", "y.xml"):
        assert env.autoescape(name) is True, name
    assert env.autoescape("systemd/ollama.service.j2") is False
