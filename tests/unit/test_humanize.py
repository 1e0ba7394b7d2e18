"""The formatters: every variant at its boundaries, with the outputs its callers have shown."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from ollamactl.humanize import (
    GIB,
    MIB,
    bytes_iec,
    bytes_si,
    bytes_si_one_decimal,
    duration_hms,
    duration_words,
    gib,
    go_duration,
    mib,
    relative_time,
)


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1023, "1.0 KB"), (1024, "1.0 KB"),
    (9_999, "10.0 KB"), (10_000, "10 KB"), (999_999, "999 KB"), (1_000_000, "1.0 MB"),
    (325_166_336, "325 MB"), (999_999_999, "999 MB"), (1_000_000_000, "1.0 GB"),
    (9_500_000_000, "9.5 GB"), (42_000_000_000, "42 GB"), (999_999_999_999, "999 GB"),
    (1_000_000_000_000, "1.0 TB"), (12_000_000_000_000, "12 TB"),
])
def test_bytes_si_is_ollamas_cli(size: int, text: str) -> None:
    assert bytes_si(size) == text


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 B"), (12, "12 B"), (999, "999 B"), (1000, "1.0 KB"), (1024, "1.0 KB"),
    (4096, "4.1 KB"), (98_400_000, "98.4 MB"), (999_999_999, "1000.0 MB"),
    (1_000_000_000, "1.0 GB"), (2_000_000_000, "2.0 GB"), (2_000_000_000_000, "2000.0 GB"),
])
def test_bytes_si_one_decimal_keeps_one_decimal_and_stops_at_gb(size: int, text: str) -> None:
    assert bytes_si_one_decimal(size) == text


def test_gib_and_mib() -> None:
    assert gib(0) == "0.0 GiB"
    assert gib(GIB - 1) == "1.0 GiB"
    assert gib(8 * GIB) == "8.0 GiB"
    assert gib(3 * GIB // 4, 2) == "0.75 GiB"
    assert mib(0) == "0 MiB"
    assert mib(MIB - 1) == "0 MiB"
    assert mib(MIB) == "1 MiB"
    assert mib(3 * MIB // 2) == "1 MiB"       # rounded down
    assert mib(1 << 30) == "1024 MiB"


@pytest.mark.parametrize(("size", "default", "blob_style"), [
    (0, "0.0 MiB", "0 MiB"),
    (MIB - 1, "1.0 MiB", "0 MiB"),
    (512 * MIB + MIB // 2, "512.5 MiB", "512 MiB"),
    (GIB - 1, "1024.0 MiB", "1023 MiB"),
    (GIB, "1.0 GiB", "1.00 GiB"),
    (3 * GIB // 2, "1.5 GiB", "1.50 GiB"),
    (1024 * GIB, "1024.0 GiB", "1024.00 GiB"),
])
def test_bytes_iec_switches_to_gib_at_one_gib(size: int, default: str, blob_style: str) -> None:
    assert bytes_iec(size) == default
    assert bytes_iec(size, digits=2, whole_mib=True) == blob_style


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "Less than a second"), (0.99, "Less than a second"), (1, "1 second"),
    (59.9, "59 seconds"), (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
    (270, "4 minutes"), (3599, "59 minutes"), (3600, "About an hour"), (5399, "About an hour"),
    (5400, "2 hours"), (47 * 3600, "47 hours"), (48 * 3600, "2 days"),
    (13 * 86400, "13 days"), (14 * 86400, "2 weeks"), (60 * 86400, "2 months"),
    (729 * 86400, "24 months"), (730 * 86400, "2 years"),
])
def test_duration_words_is_ollamas_human_duration(seconds: float, text: str) -> None:
    assert duration_words(seconds) == text


def test_relative_time_past_and_future() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0).astimezone()
    at = now.timestamp()
    assert relative_time(now + timedelta(minutes=4, seconds=59), at) == "4 minutes from now"
    assert relative_time(now, at) == "Less than a second from now"
    assert relative_time(now - timedelta(seconds=1), at) == "1 second ago"
    assert relative_time(now - timedelta(days=3), at) == "3 days ago"
    assert relative_time(now - timedelta(days=800), at) == "2 years ago"


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "0m00s"), (0, "0m00s"), (59.9, "0m59s"), (60, "1m00s"), (3599, "59m59s"),
    (3600, "1h00m00s"), (3723, "1h02m03s"), (86400 * 2 + 5, "48h00m05s"),
])
def test_duration_hms(seconds: float, text: str) -> None:
    assert duration_hms(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.5, "0.5s"), (59, "59s"), (60, "1m0s"), (300, "5m0s"), (3599, "59m59s"),
    (3600, "1h0m0s"), (5400, "1h30m0s"), (90061, "25h1m1s"),
    (math.inf, "-1"), (-1, "-1"), (-0.001, "-1"),
])
def test_go_duration_as_ollama_logs_keep_alive(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
