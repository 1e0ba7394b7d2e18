"""`ollamactl top` against the real server: on a pseudo-terminal (curses, read back through the
pyte terminal emulator) it shows the loaded model and a non-zero tokens/s while generations run,
follows a resize, and `q` or Ctrl-C quits with 0; on a pipe it prints plain lines and stops
after ``--count``."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyte
import pytest
import requests

from tests.integration.server_process import SMOLLM2, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_ENV = {"OLLAMA_METRICS": "1"}
COLUMNS, ROWS = 120, 30
PROMPT = "Count from one to twenty."


def top_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OLLAMA_") and k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm"
    return env


def generate(server: Server, tokens: int = 24) -> None:
    answer = server.post("/api/generate", {"model": SMOLLM2, "prompt": PROMPT, "stream": False,
                                           "keep_alive": "10m",
                                           "options": {"num_predict": tokens,
                                                       "temperature": 0}})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def loaded(server: Server) -> Server:
    """The server, with SmolLM2 loaded by one generation, and its /metrics served (checked: a
    server without them fails here, it is not skipped)."""
    generate(server)
    scrape = requests.get(server.url + "/metrics", timeout=10)
    assert scrape.status_code == 200, f"GET /metrics answered {scrape.status_code}"
    assert "ollama_generated_tokens_total" in scrape.text
    return server


@contextmanager
def generating(server: Server) -> Iterator[None]:
    """Generations one after another in a thread, for as long as the block runs."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                generate(server)
            except BaseException as exc:  # reported by the test, not lost in the thread
                failures.append(exc)
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(120)
    assert not failures, failures


def take_terminal() -> None:
    """In the child, a session leader by then: make the pty its controlling terminal, so
    Ctrl-C typed there reaches it as SIGINT."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A child process on a pseudo-terminal of a fixed size, and what its screen shows."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     env=top_env(), start_new_session=True,
                                     preexec_fn=take_terminal)
        os.close(slave)
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def pump(self, timeout_s: float = 0.2) -> bool:
        """Feed what the child wrote to the emulator; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], timeout_s)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its end
            return False
        if not data:
            return False
        self.raw += data
        self.stream.feed(data)
        return True

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, found: re.Pattern[str] | str, timeout_s: float) -> str:
        """The first screen line that matches ``found``, waiting up to ``timeout_s``."""
        pattern = re.compile(found) if isinstance(found, str) else found
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            for line in self.lines():
                if pattern.search(line):
                    return line
            assert self.proc.poll() is None, f"top exited: {self.raw[-2000:]!r}"
        raise AssertionError(f"no line matches {pattern.pattern!r}; screen:\n"
                             + "\n".join(self.lines()))

    def resize(self, rows: int, columns: int) -> None:
        """What a terminal window does when dragged: a new size, and SIGWINCH to the child."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.screen.resize(rows, columns)

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout_s: float = 15.0) -> int:
        """Read until the child exits (so it never blocks on a full terminal); its exit code."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            if not self.pump(0.1):
                break
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


def model_cells(line: str) -> list[str]:
    """NAME, PROCESSOR, MEMORY, TOK/S, TTFT, UNTIL of a model row (columns are 2+ spaces
    apart)."""
    return re.split(r"\s{2,}", line.strip())


def test_top_on_a_terminal_shows_the_model_and_its_tokens_per_second(loaded: Server) -> None:
    host = loaded.url.removeprefix("http://")
    term = Terminal([sys.executable, "-m", "ollamactl", "top", "--interval", "0.5", loaded.url])
    try:
        # the whole title line (a read can land while the line is still being painted)
        title = term.wait_for(r"^ollamactl top.*q: quit$", timeout_s=30)
        assert len(title) == COLUMNS
        host_line = term.wait_for(re.escape(host) + r"\s+up\s.*mem \S+", timeout_s=30)
        assert "queue 0/" in host_line and "ollamactl " in host_line
        heading = term.wait_for(r"^\s+NAME\s+PROCESSOR.*UNTIL$", timeout_s=10)
        assert heading.split() == ["NAME", "PROCESSOR", "MEMORY", "TOK/S", "TTFT", "UNTIL"]
        row = term.wait_for(re.escape(SMOLLM2) + r".*from now", timeout_s=10)
        assert model_cells(row)[:2] == [SMOLLM2, "100% CPU"]

        with generating(loaded):
            rate = 0.0
            deadline = time.monotonic() + 90
            while rate <= 0 and time.monotonic() < deadline:
                term.pump()
                rows = [model_cells(line) for line in term.lines() if SMOLLM2 in line]
                rate = max((float(c[3]) for c in rows if re.fullmatch(r"\d+\.\d", c[3])),
                           default=0.0)
        assert rate > 0, "\n".join(term.lines())
        cells = model_cells(term.wait_for(re.escape(SMOLLM2) + r".*from now", timeout_s=5))
        assert cells[4] == "-" or re.fullmatch(r"\d+ ms|\d+\.\d\d s", cells[4]), cells
        assert cells[5].endswith("from now"), cells

        term.resize(20, 90)
        narrower = term.wait_for(r"^ollamactl top.*q: quit$", timeout_s=10)
        assert len(narrower) == 90
        term.send(b"q")
        assert term.finish() == 0
    finally:
        term.close()


def test_ctrl_c_leaves_the_screen_and_the_plain_lines_with_0(loaded: Server) -> None:
    term = Terminal([sys.executable, "-m", "ollamactl", "top", loaded.url])
    try:
        term.wait_for(re.escape(SMOLLM2), timeout_s=30)
        term.send(b"\x03")
        assert term.finish() == 0
        assert b"\x1b[?1049l" in term.raw or b"\x1b[?47l" in term.raw   # the screen restored
    finally:
        term.close()

    with subprocess.Popen([sys.executable, "-m", "ollamactl", "top", "--interval", "0.2",
                           loaded.url], env=top_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as plain:
        assert plain.stdout is not None and plain.stderr is not None
        assert plain.stdout.readline().startswith("TIME")
        assert SMOLLM2 in plain.stdout.readline()
        plain.send_signal(signal.SIGINT)
        assert plain.wait(15) == 0, plain.stderr.read()


def test_top_on_a_pipe_prints_plain_lines_and_stops_after_count(loaded: Server) -> None:
    generate(loaded)  # loaded again, should a keep_alive have run out
    done = subprocess.run([sys.executable, "-m", "ollamactl", "top", "--count", "2",
                           "--interval", "0.5", loaded.url], env=top_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["TIME", "HOST", "NAME", "PROCESSOR", "MEMORY", "TOK/S", "TTFT",
                              "QUEUE", "UNTIL"]
    assert len(rows) == 2, done.stdout
    for row in rows:
        cells = re.split(r"\s{2,}", row.strip())
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", cells[0]), row
        assert cells[1:4] == [loaded.url.removeprefix("http://"), SMOLLM2, "100% CPU"], row
        assert re.fullmatch(r"\d+\.\d", cells[5]), row          # metrics served: a rate
        assert cells[7].startswith("0/"), row                  # queue waiting/limit
    assert "\x1b" not in done.stdout                            # no terminal codes on a pipe
