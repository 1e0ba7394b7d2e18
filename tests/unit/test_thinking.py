"""Thinking: Ollama's split of ``<think>...</think>`` output into thinking and content, whole
and streamed in any cut (a tag split across pieces must not leak); the request's ``think``
value, what templates see of it, and OpenAI's reasoning effort mapped onto it."""

from __future__ import annotations

import itertools
from dataclasses import asdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollamactl.runtime.http.openai import OpenAIError, think_from_effort
from ollamactl.runtime.http.schemas import BadRequest, parse_think
from ollamactl.runtime.prompting.render import TemplateSource, render_job
from ollamactl.runtime.prompting.reply import ReplySplitter
from ollamactl.runtime.prompting.thinking import ThinkingParser
from ollamactl.runtime.prompting.tools import ToolCallParser


def split(text: str, cuts: list[int] | None = None, *, opened: bool = False,
          tags: tuple[str, str] = ("<think>", "</think>")) -> tuple[str, str]:
    """``text`` fed in pieces cut at ``cuts`` (whole if None), then finished."""
    parser = ThinkingParser(*tags)
    if opened:
        parser.feed(tags[0])
    bounds = [0, *sorted(cuts or []), len(text)]
    thinking, content = [], []
    for start, end in itertools.pairwise(bounds):
        t, c = parser.feed(text[start:end])
        thinking.append(t)
        content.append(c)
    t, c = parser.finish()
    return "".join(thinking) + t, "".join(content) + c


@pytest.mark.parametrize(("text", "expected"), [
    ("<think>Let me see.</think>The answer is 4.", ("Let me see.", "The answer is 4.")),
    ("\n  <think>\n\nhmm\n</think>\n\nIt is 4.", ("hmm\n", "It is 4.")),
    ("The answer is 4.", ("", "The answer is 4.")),
    ("  plain with leading space", ("", "  plain with leading space")),
    ("<think>still thinking when it stopped", ("still thinking when it stopped", "")),
    ("<think>a</think>", ("a", "")),
    ("<think>a</think>b</think>c", ("a", "b</think>c")),
    ("text <think>not at the start</think>", ("", "text <think>not at the start</think>")),
    ("<thi", ("", "<thi")),  # a half tag at the end is given back, not dropped
    ("<think>half a closing </thi", ("half a closing </thi", "")),
])
def test_whole_answers(text: str, expected: tuple[str, str]) -> None:
    assert split(text) == expected


def test_a_prompt_that_opened_the_block_starts_inside_it() -> None:
    assert split("the model thinks</think>then answers", opened=True) == \
        ("the model thinks", "then answers")
    assert split("never closes", opened=True) == ("never closes", "")


def test_other_tags_from_the_template() -> None:
    assert split("Thought: x Done. y", tags=("Thought:", "Done.")) == ("x ", "y")


def test_a_tag_cut_in_the_middle_is_held_until_whole() -> None:
    parser = ThinkingParser("<think>", "</think>")
    assert parser.feed("<th") == ("", "")
    assert parser.feed("ink>abc</th") == ("abc", "")
    assert parser.feed("ink>") == ("", "")
    assert parser.feed(" done") == ("", "done")


PIECES = st.sampled_from(["<think>", "</think>", "<", "</", "think", ">", " ", "\n", "a",
                          "b c", "<th", "ink>", "</thi", "nk>"])


@given(text=st.lists(PIECES, max_size=12).map("".join),
       cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
       opened=st.booleans())
def test_streaming_in_any_cut_gives_the_whole_answer(text: str, cuts: list[int],
                                                     opened: bool) -> None:
    cuts = [c for c in cuts if c <= len(text)]
    assert split(text, cuts, opened=opened) == split(text, opened=opened)


@given(thinking=st.text(alphabet="ab <>/\n", max_size=20).filter(
           lambda s: "</think>" not in s and s.strip() == s and s),
       content=st.text(alphabet="ab <>/\n", max_size=20).filter(
           lambda s: s.strip() == s),
       cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6))
def test_thinking_and_content_come_back_apart(thinking: str, content: str,
                                              cuts: list[int]) -> None:
    text = f"<think>\n{thinking}</think>\n\n{content}"
    cuts = [c for c in cuts if c <= len(text)]
    assert split(text, cuts) == (thinking, content)


@pytest.mark.parametrize(("raw", "values"), [
    (None, {"Think": False, "ThinkLevel": "", "IsThinkSet": False}),
    (False, {"Think": False, "ThinkLevel": "", "IsThinkSet": True}),
    (True, {"Think": True, "ThinkLevel": "medium", "IsThinkSet": True}),
    ("low", {"Think": True, "ThinkLevel": "low", "IsThinkSet": True}),
    ("max", {"Think": True, "ThinkLevel": "max", "IsThinkSet": True}),
])
def test_think_values_reach_the_template_as_ollamas(raw: bool | str | None,
                                                    values: dict[str, object]) -> None:
    assert parse_think(raw).template_values() == values


@pytest.mark.parametrize(("raw", "message"), [
    ("extreme", 'invalid think value: "extreme" (must be "high", "medium", "low", "max", '
                "true, or false)"),
    ("", 'invalid think value: "" (must be "high", "medium", "low", "max", true, or false)'),
    (1, 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'),
    ({"level": "low"}, "think must be a boolean or string"),
])
def test_invalid_think_values_get_ollamas_messages(raw: object, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_think(raw)
    assert str(caught.value).startswith(message)


def _render(template: str, think: bool | str | None) -> str:
    source = TemplateSource("m", template, None, "llama", None, None, False)
    prompt, _ = render_job({"source": asdict(source), "messages": [
        {"role": "user", "content": "q"}], "think": parse_think(think).template_values()})
    return prompt.text


def test_go_templates_see_think_level_and_whether_it_was_set() -> None:
    template = ("{{ range .Messages }}{{ .Content }}{{ end }}|{{ .Think }}|{{ .ThinkLevel }}|"
                "{{ .IsThinkSet }}")
    assert _render(template, "high") == "q|true|high|true"
    assert _render(template, False) == "q|false||true"
    assert _render(template, None) == "q|false||false"


def test_jinja_templates_get_enable_thinking_when_think_is_set() -> None:
    template = "{% if enable_thinking is defined %}{{ enable_thinking }}{% else %}unset{% endif %}"
    assert [_render(template, v) for v in (True, False, None)] == ["True", "False", "unset"]


def test_thinking_comes_off_before_tool_calls_are_parsed() -> None:
    reply = ReplySplitter(ThinkingParser("<think>", "</think>"), ToolCallParser(["f"]))
    pieces = [reply.feed(p) for p in ("<think>call f?", "</think>\n<tool_", "call>",
                                      '{"name": "f", "arguments": {"x": 1}}</tool_call>')]
    pieces.append(reply.finish())
    assert "".join(p.thinking for p in pieces) == "call f?"
    assert "".join(p.content for p in pieces) == ""
    (call,) = [c for p in pieces for c in p.calls]
    assert (call.name, call.arguments) == ("f", {"x": 1})


@pytest.mark.parametrize(("effort", "think"), [
    ("none", False), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"),
    ("max", "max"), ("xhigh", "max"), ("ultra", "max"), ("", None), (None, None),
])
def test_openai_reasoning_effort_maps_onto_think(effort: str | None,
                                                 think: bool | str | None) -> None:
    assert think_from_effort({"reasoning_effort": effort}) == think
    nested = {"reasoning": {"effort": effort}, "reasoning_effort": "bogus"}  # nested first
    assert think_from_effort(nested) == think


def test_an_unknown_reasoning_effort_is_a_400() -> None:
    with pytest.raises(OpenAIError) as caught:
        think_from_effort({"reasoning_effort": "extreme"})
    assert caught.value.status == 400
    assert caught.value.message.startswith('invalid reasoning value: "extreme"')
