"""The README table renderer: every number comes from the recorded outcomes."""

from __future__ import annotations

import pytest

from bench.reliability_table import END, START, render, replace_section

RESULTS = {"classes": {
    "test_faults": {"title": "Faults", "run_at": "2026-01-02T00:00:00Z", "tests": {
        "test_a": {"outcome": "passed", "inputs": 2, "faults": ["runner SIGKILL"], "load": [],
                   "duration_s": 1.0, "detail": ""},
        "test_b": {"outcome": "skipped", "inputs": 0, "faults": [], "load": [],
                   "duration_s": 0.0, "detail": "cannot mount"}}},
    "test_paths": {"title": "Paths from requests", "run_at": "2026-01-01T00:00:00Z", "tests": {
        "test_c": {"outcome": "failed", "inputs": 348, "faults": [], "load": ["x | y"],
                   "duration_s": 1.0, "detail": "boom"}}},
}}


def test_render_sums_what_was_recorded() -> None:
    lines = render(RESULTS).splitlines()
    assert lines[2] == "| Paths from requests | 0/1 | 348 | - | x \\| y | FAIL (1) |"
    assert lines[3] == ("| Faults | 1/2 | 2 | 1: runner SIGKILL | - | "
                        "pass, 1 skipped: cannot mount |")
    assert "last run 2026-01-02T00:00:00Z" in lines[-1]


def test_replace_section_keeps_the_rest() -> None:
    readme = f"intro\n{START}\nold table\n{END}\noutro\n"
    assert replace_section(readme, "new") == f"intro\n{START}\nnew\n{END}\noutro\n"
    with pytest.raises(SystemExit):
        replace_section("no markers", "new")
