"""The ``isolated`` marker (tests/conftest.py): a native crash in a test that runs llama.cpp
in-process fails that test, and the session goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CRASHING = '''
import os, signal
import pytest

@pytest.mark.isolated
def test_dies_of_sigill():
    os.kill(os.getpid(), signal.SIGILL)

@pytest.mark.isolated
def test_fails_in_the_child():
    assert 1 + 1 == 3

@pytest.mark.isolated
def test_passes_in_the_child():
    assert os.getpid() != int(os.environ["PYTEST_PARENT"])

def test_after_the_crash_the_session_goes_on():
    assert True
'''


def test_a_test_killed_by_sigill_fails_alone_and_the_session_goes_on(tmp_path: Path) -> None:
    (tmp_path / "test_crash.py").write_text(CRASHING)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTEST_PARENT": "0"}
    proc = subprocess.run([sys.executable, "-c",
                           "import os, sys, pytest; os.environ['PYTEST_PARENT'] = "
                           "str(os.getpid()); sys.exit(pytest.main(sys.argv[1:]))",
                           "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_crash.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert "2 failed, 2 passed" in out, out
    assert "the isolated test process died of SIGILL" in out
    assert "assert (1 + 1) == 3" in out       # a child's ordinary failure comes back in full
