"""The REPL as a user types it: ``ollamactl run smollm2:135m`` in a pseudo-terminal against the
real server (its own, for this module), one line at a time, reading what the terminal shows.
Generations stay tiny (num_predict 5) to keep the module quick on two cores."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.server_process import SMOLLM2, Server, die_with_parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_ENV = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_LOADED_MODELS": "1"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\r\x07]")
WAIT_S = 120.0  # a reply on a busy two-core machine, model load included


def _own_terminal() -> None:
    """In the child, a session leader by now: die with the test, and take the pty on stdin as
    the controlling terminal so Ctrl-C reaches it as SIGINT."""
    die_with_parent()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``ollamactl ARGS`` on the slave side of a pty (stdin, stdout and stderr), 200 columns
    wide; the test reads the master side."""

    def __init__(self, server: Server, home: Path, *args: str) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = {**os.environ, "OLLAMA_HOST": server.url, "NO_PROXY": "*", "HOME": str(home),
               "TERM": "xterm-256color"}
        env.pop("OLLAMA_NOHISTORY", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "ollamactl", *args], stdin=slave,
                                     stdout=slave, stderr=slave, env=env, start_new_session=True,
                                     preexec_fn=_own_terminal)
        os.close(slave)
        self.master = master
        self.seen = ""     # everything shown, escape sequences removed
        self.mark = 0      # where the last expect() stopped

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def expect(self, text: str, timeout: float = WAIT_S) -> str:
        """Wait until ``text`` shows after the last match; return what showed up to it."""
        deadline = time.monotonic() + timeout
        while (found := self.seen.find(text, self.mark)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never showed; the screen ended with {self.seen[-800:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child is gone and the pty closed
                    chunk = b""
                assert chunk or self.proc.poll() is None, \
                    f"exited before {text!r} showed: {self.seen[-800:]!r}"
                self.seen += ANSI.sub("", chunk.decode(errors="replace"))
        shown = self.seen[self.mark:found]
        self.mark = found + len(text)
        return shown

    def command(self, line: str, until: str = ">>> ") -> str:
        """Type ``line``; what showed before the next prompt (the echo of ``line`` left out)."""
        self.send(line)
        return self.expect(until).split("\n", 1)[-1]

    def close(self) -> int:
        """Wait for the exit (killing it after 30 s) and release the pty; the exit code."""
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.master >= 0:
                os.close(self.master)
                self.master = -1


@pytest.fixture
def terminal(server: Server, tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(server, tmp_path, "run", SMOLLM2)
    try:
        term.expect(">>> ")
        yield term
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
        term.close()  # a no-op after the test's own close


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": server.url, "NO_PROXY": "*"}
    return subprocess.run([sys.executable, "-m", "ollamactl", *args], env=env, text=True,
                          capture_output=True, timeout=120, check=False)


def test_a_session_sets_parameters_chats_saves_and_leaves(terminal: Terminal, server: Server,
                                                          tmp_path: Path) -> None:
    assert "Set parameter 'num_predict' to '5'" in \
        terminal.command("/set parameter num_predict 5")
    assert "Set parameter 'stop' to 'a, b'" in terminal.command("/set parameter stop a b")
    assert "Set parameter 'temperature' to '0'" in \
        terminal.command("/set parameter temperature 0")
    assert 'Couldn\'t set parameter: "unknown parameter \'nope\'"' in \
        terminal.command("/set parameter nope 1")
    shown = terminal.command("/show parameters")
    assert "Model defined parameters:" in shown and "User defined parameters:" in shown
    assert f"  {'num_predict':<30} 5\n" in shown
    assert f"  {'stop':<30} [a b]\n" in shown

    assert "Set system message." in terminal.command("/set system You are a pirate.")
    assert "You are a pirate.\n" in terminal.command("/show system")
    modelfile = terminal.command("/show modelfile")      # the server shows the session's
    assert 'SYSTEM """You are a pirate."""' in modelfile and "PARAMETER num_predict 5" in modelfile

    terminal.send('"""Say')
    terminal.expect("... ")
    answer = terminal.command('hello"""')
    assert answer.strip()

    assert "Created new model 'mymodel'" in terminal.command("/save mymodel")
    assert "Cleared session context" in terminal.command("/clear")
    assert "Unknown command '/nope'. Type /? for help" in terminal.command("/nope")
    terminal.send("/bye")
    assert terminal.close() == 0

    assert "mymodel:latest" in cli(server, "list").stdout
    saved = requests.post(server.url + "/api/show", json={"model": "mymodel"}, timeout=30).json()
    assert saved["system"] == "You are a pirate."
    assert "num_predict" in saved["parameters"] and '"a"' in saved["parameters"]
    said = [(m["role"], m["content"]) for m in saved["messages"]]
    assert said[:2] == [("system", "You are a pirate."), ("user", "Say\nhello")]
    assert said[2][0] == "assistant"
    history = (tmp_path / ".ollama" / "history").read_text()
    assert "/set parameter num_predict 5" in history
    assert cli(server, "rm", "mymodel").returncode == 0


def test_help_multiline_system_load_nohistory_and_ctrl_keys(terminal: Terminal,
                                                            tmp_path: Path) -> None:
    terminal.send("/?")
    assert "/load <model>   Load a session or model" in terminal.expect(">>> ")
    assert "/set think             Enable thinking" in terminal.command("/? set")
    terminal.send('/set system """Talk')
    terminal.expect("... ")
    assert "Set system message." in terminal.command('like a pirate."""')
    assert "Talk\nlike a pirate.\n" in terminal.command("/show system")
    assert "Set 'verbose' mode." in terminal.command("/set verbose")
    assert "Set format to 'json' mode." in terminal.command("/set format json")
    assert "Disabled format." in terminal.command("/set noformat")
    assert "Couldn't find model 'missing:1b'" in terminal.command("/load missing:1b")
    assert "Loading model 'smollm2:135m'" in terminal.command("/load smollm2:135m")
    terminal.command("/set nohistory")
    terminal.command("/show license")
    assert "Use Ctrl + d or /bye to exit." in terminal.command("\x03")
    os.write(terminal.master, b"\x04")
    assert terminal.close() == 0
    history = (tmp_path / ".ollama" / "history").read_text()
    assert "/set nohistory" in history and "/show license" not in history
