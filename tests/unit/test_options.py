"""Runtime options: Ollama's type rules and messages, ranges, strictness, merge precedence."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ollamactl.runtime.store.options import (
    DEFAULT_NUM_CTX,
    OPTIONS,
    RUNNER_OPTIONS,
    InvalidOption,
    merge_options,
    parse_parameter,
    runner_options,
    validate_options,
)


def test_valid_options_are_typed() -> None:
    result = validate_options({"num_ctx": 4096.7, "temperature": 1, "stop": ["a", "b"],
                               "use_mmap": False, "seed": -1, "top_p": 0.5}, strict=True)
    assert result == {"num_ctx": 4096, "temperature": 1.0, "stop": ["a", "b"],
                      "use_mmap": False, "seed": -1, "top_p": 0.5}
    assert isinstance(result["num_ctx"], int) and isinstance(result["temperature"], float)


@pytest.mark.parametrize(("options", "message"), [
    ({"top_k": "abc"}, 'option "top_k" must be of type integer'),
    ({"top_k": True}, 'option "top_k" must be of type integer'),
    ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
    ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
    ({"stop": "x"}, 'option "stop" must be of type array'),
    ({"stop": ["x", 1]}, 'option "stop" must be of an array of strings'),
    ({"num_ctx": -5}, 'option "num_ctx" must be at least 1'),
    ({"num_ctx": 0}, 'option "num_ctx" must be at least 1'),
    ({"num_ctx": 2**40}, 'option "num_ctx" must be at most'),
    ({"top_p": 1.5}, 'option "top_p" must be at most 1'),
    ({"temperature": float("nan")}, 'option "temperature" must be a finite number'),
    ({"num_batch": 0}, 'option "num_batch" must be at least 1'),
])
def test_bad_values_name_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOption) as info:
        validate_options(options, strict=False)
    assert str(info.value).startswith(message)
    assert info.value.name == next(iter(options))


def test_unknown_options_logged_when_lenient_and_refused_when_strict(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert validate_options({"bogus": 1, "top_k": 5}, strict=False) == {"top_k": 5}
    assert "invalid option provided: bogus" in caplog.text
    with pytest.raises(InvalidOption, match=r"^unknown parameter 'bogus'$"):
        validate_options({"bogus": 1}, strict=True)
    assert validate_options({"mirostat": 0, "f16_kv": True}, strict=True) == {}


def test_merge_precedence_and_num_ctx_default() -> None:
    merged = merge_options({"temperature": 0.1, "stop": ["x"]}, {"temperature": 0.9})
    assert merged["temperature"] == 0.9 and merged["stop"] == ["x"]
    assert merged["num_ctx"] == DEFAULT_NUM_CTX == 4096     # Ollama 0.33 without a GPU
    assert merged["repeat_penalty"] == 1.0                  # off since Ollama v0.32.10
    assert set(merged) == set(OPTIONS)
    assert merge_options(None, None, 8192)["num_ctx"] == 8192
    assert merge_options(None, {"num_ctx": 100000}, 2048, max_num_ctx=8192)["num_ctx"] == 8192
    with pytest.raises(InvalidOption):
        merge_options(None, {"num_ctx": -5}, 2048)


def test_runner_options_detect_reload_needs() -> None:
    assert {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap",
            "num_thread"} <= RUNNER_OPTIONS
    a = merge_options(None, {"temperature": 0.1}, 2048)
    b = merge_options(None, {"temperature": 0.7}, 2048)
    c = merge_options(None, {"num_ctx": 4096}, 2048)
    assert runner_options(a) == runner_options(b) != runner_options(c)


@pytest.mark.parametrize(("name", "text", "value"), [
    ("temperature", "0.7", 0.7), ("num_ctx", "4096", 4096), ("use_mmap", "false", False),
    ("stop", "<|im_end|>", "<|im_end|>"), ("TOP_K", "20", 20),
])
def test_parse_parameter(name: str, text: str, value: Any) -> None:
    assert parse_parameter(name, text) == value


def test_parse_parameter_errors() -> None:
    with pytest.raises(InvalidOption, match="unknown parameter 'nope'"):
        parse_parameter("nope", "1")
    with pytest.raises(InvalidOption, match='option "num_ctx" must be of type integer'):
        parse_parameter("num_ctx", "4k")
    with pytest.raises(InvalidOption, match='option "num_ctx" must be at least 1'):
        parse_parameter("num_ctx", "-5")
    assert parse_parameter("mirostat", "2") is None
