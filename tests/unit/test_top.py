"""`ollamactl top`'s model, layout and plain loop against canned ``/api/ps`` and ``/metrics``
answers from a tiny HTTP server on 127.0.0.1: rates from deltas, a server without metrics, an
unreachable host beside a good one, a restarted server, and the plain lines for a pipe."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from ollamactl import settings
from ollamactl.client import Client
from ollamactl.errors import ApiRequestFailed
from ollamactl.top import metrics, render
from ollamactl.top.model import Top, View
from ollamactl.top.screen import can_draw, run_plain
from tests.conftest import Cli
from tests.integration.server_process import free_port
from tests.loopback import serving

MODEL = "smollm2:135m"
NOW = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)


@dataclass
class FakeOllama:
    """What the stub server answers now; tests change it between refreshes."""

    models: list[dict[str, Any]] = field(default_factory=list)
    metrics_text: str | None = None          # None: /metrics answers 404, as a real Ollama
    version: dict[str, Any] = field(default_factory=lambda: {"version": "0.12.3",
                                                             "ollamactl": "0.1.0"})
    queue: dict[str, int] | None = field(default_factory=lambda: {"pending": 1, "max": 512})
    url: str = ""

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if path == "/":
            return 200, "text/plain", b"Ollama is running"
        if path == "/api/version":
            return 200, "application/json", json.dumps(self.version).encode()
        if path == "/api/ps":
            body: dict[str, Any] = {"models": self.models}
            if self.queue is not None:
                body["queue"] = self.queue
            return 200, "application/json", json.dumps(body).encode()
        if path == "/metrics" and self.metrics_text is not None:
            return 200, "text/plain; version=0.0.4", self.metrics_text.encode()
        return 404, "text/plain", b"404 page not found"


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    state = FakeOllama()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, kind, body = state.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    with serving(Handler) as port:
        state.url = f"http://127.0.0.1:{port}"
        yield state


def loaded(name: str = MODEL, size: int = 100_000_000, size_vram: int = 0,
           minutes: int = 5) -> dict[str, Any]:
    return {"name": name, "model": name, "size": size, "size_vram": size_vram,
            "digest": "ab" * 32, "expires_at": (NOW + timedelta(minutes=minutes)).isoformat()}


def exposition(*, generated: dict[str, float], ttft: dict[str, tuple[float, float]],
               requests: float = 0, polls: float = 0, depth: int = 0, limit: int = 8,
               crashes: int = 0) -> str:
    """The families the server exposes, as prometheus_client writes them."""
    lines = ["# HELP ollama_generated_tokens_total Tokens generated.",
             "# TYPE ollama_generated_tokens_total counter"]
    lines += [f'ollama_generated_tokens_total{{model="{m}"}} {v}' for m, v in generated.items()]
    lines += ["# TYPE ollama_time_to_first_token_seconds histogram"]
    for m, (total, count) in ttft.items():
        lines += [f'ollama_time_to_first_token_seconds_bucket{{le="+Inf",model="{m}"}} {count}',
                  f'ollama_time_to_first_token_seconds_sum{{model="{m}"}} {total}',
                  f'ollama_time_to_first_token_seconds_count{{model="{m}"}} {count}']
    lines += ["# TYPE ollama_requests_total counter",
              f'ollama_requests_total{{method="POST",route="/api/generate",status="200"}} '
              f'{requests}',
              f'ollama_requests_total{{method="GET",route="/api/ps",status="200"}} {polls}',
              f'ollama_requests_total{{method="GET",route="/metrics",status="200"}} {polls}',
              "# TYPE ollama_queue_depth gauge", f"ollama_queue_depth {depth}",
              "# TYPE ollama_queue_limit gauge", f"ollama_queue_limit {limit}",
              "# TYPE ollama_runtime_info gauge",
              'ollama_runtime_info{build="abc",variant="cpu_avx2",version="0.1.0"} 1.0',
              "# TYPE ollama_runner_crashes_total counter"]
    if crashes:
        lines.append(f'ollama_runner_crashes_total{{model="{MODEL}",signal="SIGILL"}} {crashes}')
    return "\n".join(lines) + "\n"


def ticking(*moments: float) -> Callable[[], float]:
    """A monotonic clock that returns ``moments`` in turn (one per scrape)."""
    remaining = list(moments)
    return lambda: remaining.pop(0)


def watch(*urls: str, clock: Callable[[], float] | None = None, timeout_s: float = 2.0) -> Top:
    addresses = [settings.parse_host(u) for u in urls]
    kwargs: dict[str, Any] = {"wall": NOW.timestamp}
    if clock is not None:
        kwargs["clock"] = clock
    return Top(addresses, timeout_s=timeout_s, **kwargs)


# -- the model: rates from deltas -----------------------------------------------------------------

def test_tokens_per_second_and_ttft_come_from_the_deltas_between_scrapes(
        fake: FakeOllama) -> None:
    fake.models = [loaded()]
    fake.metrics_text = exposition(generated={MODEL: 100}, ttft={MODEL: (0.5, 5)})
    with watch(fake.url, clock=ticking(10.0, 12.0, 13.0)) as top:
        first = top.refresh().hosts[0]
        assert first.is_up and first.tokens_per_s is None and first.requests_per_s is None
        assert first.models[0].tokens_per_s is None
        assert first.models[0].ttft_s == pytest.approx(0.1)    # the mean since the start

        fake.metrics_text = exposition(generated={MODEL: 150}, ttft={MODEL: (1.1, 7)},
                                       requests=4, polls=9, depth=2, crashes=1)
        second = top.refresh()
        host = second.hosts[0]
        assert second.interval_s == pytest.approx(2.0)
        assert host.tokens_per_s == pytest.approx(25.0)        # 50 tokens in 2 s
        assert host.requests_per_s == pytest.approx(2.0)       # top's own polls left out
        assert (host.queue_depth, host.queue_limit) == (2, 8)  # metrics win over /api/ps
        assert host.crashes == 1 and host.variant == "cpu_avx2"
        header = "".join(s.text for s in render.screen_lines(second, interval_s=1,
                                                             width=150)[1])
        assert "ollamactl 0.1.0 (API 0.12.3) cpu_avx2  queue 2/8  tok/s 25.0  req/s 2.0" in header
        assert header.endswith("mem 100 MB  crashes 1")
        row = host.models[0]
        assert row.tokens_per_s == pytest.approx(25.0)
        assert row.ttft_s == pytest.approx(0.3)                # 0.6 s over 2 new requests
        assert row.processor == "100% CPU" and row.memory_bytes == 100_000_000
        assert row.until == "5 minutes from now"

        third = top.refresh().hosts[0]                          # nothing happened in 1 s
        assert third.tokens_per_s == 0.0 and third.models[0].tokens_per_s == 0.0
        assert third.models[0].ttft_s == pytest.approx(0.3)     # the last mean stays


def test_a_restarted_server_counts_its_counters_from_zero(fake: FakeOllama) -> None:
    fake.models = [loaded()]
    fake.metrics_text = exposition(generated={MODEL: 500}, ttft={MODEL: (1.0, 10)})
    with watch(fake.url, clock=ticking(0.0, 1.0)) as top:
        top.refresh()
        fake.metrics_text = exposition(generated={MODEL: 20}, ttft={MODEL: (0.2, 1)})
        row = top.refresh().hosts[0].models[0]
    assert row.tokens_per_s == pytest.approx(20.0)
    assert row.ttft_s == pytest.approx(0.2)


def test_models_are_kept_apart_and_the_host_adds_them_up(fake: FakeOllama) -> None:
    other = "gemma3:270m"
    fake.models = [loaded(), loaded(other, size=300_000_000, size_vram=156_000_000)]
    fake.metrics_text = exposition(generated={MODEL: 0, other: 0}, ttft={})
    with watch(fake.url, clock=ticking(0.0, 0.5)) as top:
        top.refresh()
        fake.metrics_text = exposition(generated={MODEL: 10, other: 30}, ttft={})
        host = top.refresh().hosts[0]
    rates = {r.name: r.tokens_per_s for r in host.models}
    assert rates == {MODEL: pytest.approx(20.0), other: pytest.approx(60.0)}
    assert host.tokens_per_s == pytest.approx(80.0)
    assert host.memory_bytes == 400_000_000
    assert host.models[1].processor == "48%/52% CPU/GPU"       # as `ollamactl ps` says it
    assert host.models[1].ttft_s is None                         # no TTFT sample for it


# -- what is missing ------------------------------------------------------------------------------

def test_a_server_without_metrics_still_shows_what_api_ps_says(fake: FakeOllama) -> None:
    fake.models = [loaded(size_vram=100_000_000)]
    fake.version = {"version": "0.12.3"}                         # a real Ollama
    with watch(fake.url) as top:
        top.refresh()
        view = top.refresh()
    host = view.hosts[0]
    assert host.is_up and host.version == "Ollama 0.12.3"
    assert host.note == "no /metrics (HTTP 404)"
    assert (host.tokens_per_s, host.requests_per_s, host.crashes) == (None, None, None)
    assert (host.queue_depth, host.queue_limit) == (1, 512)     # from /api/ps's "queue"
    row = host.models[0]
    assert (row.name, row.processor, row.tokens_per_s, row.ttft_s) == \
        (MODEL, "100% GPU", None, None)
    cells = render.model_cells(row)
    assert cells[3:5] == ("-", "-")
    header = "".join(s.text for s in render.screen_lines(view, interval_s=1, width=120)[1])
    assert "no /metrics (HTTP 404)" in header and "tok/s -" in header and "queue 1/512" in header


def test_metrics_that_are_not_prometheus_text_are_reported_not_raised(
        fake: FakeOllama) -> None:
    fake.models = [loaded()]
    fake.metrics_text = "<html>a proxy's error page {{{</html>"
    with watch(fake.url) as top:
        host = top.refresh().hosts[0]
    assert host.is_up and host.note.startswith("/metrics unreadable")
    assert host.models[0].tokens_per_s is None


def test_an_unreachable_host_shows_as_such_and_hides_no_other(fake: FakeOllama) -> None:
    fake.models = [loaded()]
    fake.metrics_text = exposition(generated={MODEL: 1}, ttft={})
    dead = f"127.0.0.1:{free_port()}"
    with watch(dead, fake.url, timeout_s=1.0) as top:
        top.refresh()
        view = top.refresh()
    down, up = view.hosts
    assert (down.host, down.status, down.error) == (dead, "unreachable", "connection refused")
    assert down.models == () and not view.all_up
    assert up.is_up and [r.name for r in up.models] == [MODEL]
    screen = ["".join(s.text for s in line)
              for line in render.screen_lines(view, interval_s=1, width=100)]
    assert screen[0].startswith("ollamactl top") and "2 hosts, 1 up" in screen[0]
    assert screen[0].endswith("q: quit") and len(screen[0]) == 100
    assert screen[1] == f"{dead}  unreachable (connection refused)"
    assert screen[3].split() == ["NAME", "PROCESSOR", "MEMORY", "TOK/S", "TTFT", "UNTIL"]
    assert screen[4].split()[:3] == [MODEL, "100%", "CPU"]


def test_a_host_without_models_says_so(fake: FakeOllama) -> None:
    with watch(fake.url) as top:
        view = top.refresh()
    lines = ["".join(s.text for s in line)
             for line in render.screen_lines(view, interval_s=0.5, width=80)]
    assert "every 0.5s" in lines[0]
    assert lines[2] == "  no model loaded"


# -- the plain lines for a pipe -------------------------------------------------------------------

def test_plain_mode_prints_a_header_then_one_stamped_line_per_model_per_refresh(
        fake: FakeOllama) -> None:
    fake.models = [loaded()]
    fake.metrics_text = exposition(generated={MODEL: 0}, ttft={MODEL: (0.25, 1)})
    out = io.StringIO()
    with watch(fake.url) as top:
        code = run_plain(top, interval_s=0.1, count=2, out=out)
    assert code == 0
    header, *rows = out.getvalue().splitlines()
    assert header.split() == ["TIME", "HOST", "NAME", "PROCESSOR", "MEMORY", "TOK/S", "TTFT",
                              "QUEUE", "UNTIL"]
    assert len(rows) == 2
    for row in rows:
        fields = [f for f in row.split("  ") if f]
        assert fields[0] == NOW.astimezone().strftime("%Y-%m-%dT%H:%M:%S")
        assert [f.strip() for f in fields[1:]] == [
            fake.url.removeprefix("http://"), MODEL, "100% CPU", "100 MB", "0.0", "250 ms",
            "0/8", "5 minutes from now"]


def test_plain_mode_exits_1_when_a_host_is_down_at_the_last_refresh(fake: FakeOllama) -> None:
    out = io.StringIO()
    dead = f"127.0.0.1:{free_port()}"
    with watch(fake.url, dead, timeout_s=1.0) as top:
        code = run_plain(top, interval_s=0.1, count=1, out=out)
    assert code == 1
    up, down = out.getvalue().splitlines()[1:]
    assert up.split()[2:4] == ["-", "-"] and up.split()[-2] == "1/512"   # no model, no metrics
    assert down.split(maxsplit=2)[1:] == [dead, "unreachable (connection refused)"]


def test_the_cli_falls_back_to_plain_lines_off_a_terminal(fake: FakeOllama, cli: Cli) -> None:
    fake.models = [loaded()]
    result = cli("top", "--count", "1", "--interval", "0.1", fake.url)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].split()[:3] == ["TIME", "HOST", "NAME"]
    assert MODEL in result.out.splitlines()[1]


def test_the_cli_refuses_a_bad_interval_or_count(cli: Cli) -> None:
    assert cli("top", "--interval", "0", "127.0.0.1:1").code == 2
    assert cli("top", "--count", "0", "127.0.0.1:1").code == 2


def test_the_screen_needs_a_terminal_at_both_ends_a_real_term_and_curses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert can_draw(Tty(), Tty(), {"TERM": "xterm"})
    assert not can_draw(io.StringIO(), Tty(), {"TERM": "xterm"})
    assert not can_draw(Tty(), io.StringIO(), {"TERM": "xterm"})
    assert not can_draw(Tty(), Tty(), {"TERM": "dumb"})
    monkeypatch.setitem(sys.modules, "curses", None)             # a Python without curses
    assert not can_draw(Tty(), Tty(), {"TERM": "xterm"})


# -- the pieces -----------------------------------------------------------------------------------

def test_client_metrics_returns_the_text_and_a_404_raises(fake: FakeOllama) -> None:
    with Client(fake.url) as client:
        with pytest.raises(ApiRequestFailed) as info:
            client.metrics()
        assert info.value.status == 404
        fake.metrics_text = exposition(generated={MODEL: 3}, ttft={})
        assert 'ollama_generated_tokens_total{model="smollm2:135m"} 3' in client.metrics()


def test_metrics_are_summed_by_name_and_label() -> None:
    parsed = metrics.parse(exposition(generated={"a": 5, "b": 2}, ttft={"a": (0.5, 2)},
                                      requests=3))
    assert parsed.total("ollama_generated_tokens_total") == 7
    assert parsed.total("ollama_requests_total", route="/api/generate") == 3
    assert parsed.by_label("ollama_time_to_first_token_seconds_count", "model") == {"a": 2}
    assert parsed.total("ollama_model_memory_bytes") is None
    with pytest.raises(ValueError):
        metrics.parse("not { metrics")


def test_rates_and_latencies_read_as_people_read_them() -> None:
    assert [render.rate_text(v) for v in (None, 0.0, 42.06)] == ["-", "0.0", "42.1"]
    assert [render.seconds_text(v) for v in (None, 0.0851, 1.234)] == ["-", "85 ms", "1.23 s"]
    empty = View(taken_at=NOW.timestamp(), interval_s=1, hosts=())
    assert empty.all_up and render.plain_lines(empty) == []


class FakeWindow:
    """The few curses window calls the painter makes, recording the text drawn per row."""

    def __init__(self, height: int, width: int) -> None:
        self.size = (height, width)
        self.rows: dict[int, str] = {}

    def getmaxyx(self) -> tuple[int, int]:
        return self.size

    def erase(self) -> None:
        self.rows.clear()

    def addnstr(self, y: int, x: int, text: str, n: int, attr: int) -> None:
        row = self.rows.get(y, "").ljust(x)
        self.rows[y] = row[:x] + text[:n]

    def refresh(self) -> None:
        return


def test_the_painter_cuts_lines_to_the_window_and_says_what_did_not_fit() -> None:
    from ollamactl.top.screen import _paint

    lines = [(render.Segment("x" * 50, render.TITLE),),
             (render.Segment("host", render.HOST), render.Segment("  up", render.GOOD)),
             *[(render.Segment(f"line {i}"),) for i in range(3)]]
    window = FakeWindow(3, 20)
    _paint(window, lines, {})
    assert window.rows == {0: "x" * 20, 1: "host  up",
                           2: "... 3 more line(s): enlarge the window"[:19]}
