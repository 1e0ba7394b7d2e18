"""The server's record format and doctor's reading of it: one line per record, request text
encoded, only self-written records believed."""

from __future__ import annotations

import logging
import sys

import pytest

from ollamactl.logrecords import RecordFormatter, one_line, request_field, self_written


def test_one_line_escapes_every_line_break_and_control() -> None:
    text = "a\nb\rc\u2028d\u2029e\x85f\x0bg\x1ch\x1b[2Ki\u202ej\tk"
    escaped = one_line(text)
    assert escaped == "a\\nb\\rc\\u2028d\\u2029e\\x85f\\x0bg\\x1ch\\x1b[2Ki\\u202ej\\tk"
    assert len(escaped.splitlines()) == 1 and escaped.isprintable()


@pytest.mark.parametrize("text", ["/api/x\nlevel=ERROR msg=CUDA error", 'a"b c=d%0a',
                                  "na\u00efve\u2028", "\udcff"])
def test_request_fields_hold_no_space_equals_quote_or_control(text: str) -> None:
    field = request_field(text)
    assert not set(field) & set(' ="\n\r\t') and field.isascii() and field.isprintable()
    assert request_field("/api/generate") == "/api/generate"


def test_a_record_with_a_traceback_is_one_line() -> None:
    record = logging.LogRecord("ollamactl.server", logging.ERROR, __file__, 1, "failed: %s",
                               ("x\nlevel=ERROR msg=CUDA error",), None)
    record.request_id = "000001"
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = RecordFormatter().format(record)
    assert "\n" not in line and line.count("level=") == 2 and "Traceback" in line


@pytest.mark.parametrize(("line", "believed"), [
    ("time=2025-01-31 12:00:00,000 level=INFO request=- source=ollamactl.server "
     "msg=Listening on 127.0.0.1:11434", "Listening on 127.0.0.1:11434"),
    ("time=2025-01-31 12:00:00,000 level=WARNING request=000003 source=ollamactl.runtime."
     "scheduler msg=runner of model=x exited: CUDA error", "runner of model=x exited: CUDA error"),
    ("time=2025-01-31 12:00:00,000 level=INFO request=000002 source=ollamactl.request "
     "msg=GET /x%0Alevel%3DERROR status=404", None),
    ("time=2025-01-31 12:00:00,000 level=WARNING request=000002 source=ollamactl.runtime."
     "options msg=invalid option provided: CUDA%20error", None),
    ("time=2025-01-31T12:00:00.000+01:00 level=WARN source=types.go:654 "
     'msg="invalid option provided" option="CUDA error: unknown error"',
     "invalid option provided"),
    ("time=2025-01-31T12:00:00.000+01:00 level=INFO source=gpu.go:602 "
     'msg="no compatible GPUs were discovered"', "no compatible GPUs were discovered"),
    ("time=2025-01-31T12:00:00.000+01:00 level=INFO source=routes.go:1 msg=ready x=1", "ready"),
    ('[GIN] 2025/01/31 - 12:00:00 | 503 | 1ms | 127.0.0.1 | POST "/api/chat CUDA error"',
     "[GIN] 2025/01/31 - 12:00:00 | 503 | 1ms | 127.0.0.1 | POST "),
    ("2025-01-31T12:00:00.000+01:00 CUDA error: unknown error", "CUDA error: unknown error"),
    ("2025-01-31T12:00:00.000+01:00 time=2025-01-31 12:00:00,000 level=INFO request=000002 "
     "source=ollamactl.request msg=GET /", None),
    ("time=garbled", None),
])
def test_doctor_believes_only_self_written_records(line: str, believed: str | None) -> None:
    assert self_written(line) == believed
