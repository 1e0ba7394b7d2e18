"""Pure pieces of the serving layer: IPC frames, stop sequences, keep_alive and time formats,
and the `ollamactl ps` rendering."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

import pytest

from ollamactl.cli.models import processor_text, ps_lines, until_text
from ollamactl.runtime.http.schemas import BadRequest, created_at, parse_keep_alive
from ollamactl.runtime.ipc import HEADER, ProtocolError, decode_payload, encode_frame, frame_length
from ollamactl.runtime.runner.sequences import StopMatcher


def test_frames_round_trip_and_reject_garbage() -> None:
    frame = encode_frame({"t": "tok", "id": 3, "s": "héllo"})
    length = frame_length(frame[:HEADER.size])
    assert length == len(frame) - HEADER.size
    assert decode_payload(frame[HEADER.size:]) == {"t": "tok", "id": 3, "s": "héllo"}
    with pytest.raises(ProtocolError):
        decode_payload(b"[1, 2]")
    with pytest.raises(ProtocolError):
        frame_length(HEADER.pack(2**31))


def test_stop_matcher_holds_back_prefixes_and_cuts_at_the_stop() -> None:
    matcher = StopMatcher(["</s>", "END"])
    assert matcher.feed("Hello <") == ("Hello ", False)
    assert matcher.feed("/") == ("", False)
    assert matcher.feed("x") == ("</x", False)
    assert matcher.feed(" E") == (" ", False)
    assert matcher.feed("ND more") == ("", True)
    plain = StopMatcher([])
    assert plain.feed("abc") == ("abc", False)
    tail = StopMatcher(["stop"])
    assert tail.feed("st") == ("", False)
    assert tail.flush() == "st"


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (300, 300.0), (1.5, 1.5), (0, 0.0), ("0", 0.0), ("10m", 600.0),
    ("1h30m", 5400.0), (-1, math.inf), ("-1m", math.inf),
])
def test_keep_alive_values(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("300", "missing unit"), ("soon", "invalid duration"), (True, "Unsupported type"),
    ([5], "Unsupported type"),
])
def test_keep_alive_refusals(value: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_keep_alive(value)


def test_created_at_is_utc_rfc3339_with_trimmed_nanoseconds() -> None:
    assert created_at(1_721_681_271_147_561_000) == "2024-07-22T20:47:51.147561Z"
    assert created_at(1_721_681_271_000_000_000) == "2024-07-22T20:47:51Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", created_at())


def test_ps_formatting_in_ollamas_style() -> None:
    assert processor_text(100, 0) == "100% CPU"
    assert processor_text(100, 100) == "100% GPU"
    assert processor_text(100, 52) == "48%/52% CPU/GPU"
    now = datetime(2025, 1, 1, 12, 0, 0).astimezone()
    ts = now.timestamp()
    assert until_text((now + timedelta(minutes=4, seconds=59)).isoformat(), ts) == \
        "4 minutes from now"
    assert until_text((now + timedelta(days=365 * 292)).isoformat(), ts) == "Forever"
    assert until_text((now - timedelta(seconds=1)).isoformat(), ts) == "Stopping..."
    lines = ps_lines([{"name": "llama3:70b", "digest": "bcfb190ca3a7" + "0" * 52,
                       "size": 42_000_000_000, "size_vram": 42_000_000_000,
                       "context_length": 4096,
                       "expires_at": (now + timedelta(minutes=4, seconds=30)).isoformat()}], ts)
    # Ollama's current columns (CONTEXT since 0.12), its tabwriter's four-space padding
    assert lines == ["NAME          ID              SIZE     PROCESSOR    CONTEXT    UNTIL",
                     "llama3:70b    bcfb190ca3a7    42 GB    100% GPU     4096       "
                     "4 minutes from now"]
