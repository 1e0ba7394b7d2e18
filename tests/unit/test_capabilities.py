"""Capabilities come from what a model is, as Ollama computes them: the GGUF (pooling type,
vision metadata), a projector layer, and what the template can express (``.Tools``,
``.Suffix``, thinking tags), never from a word that happens to appear in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollamactl.runtime.prompting.capabilities import TemplateFeatures, template_features
from ollamactl.runtime.prompting.gotemplate import parse
from ollamactl.runtime.store.gguf import GGUFInfo
from ollamactl.runtime.store.models import capabilities_of
from ollamactl.templating import template_root

QWEN3_LIKE = """{{- if .Thinking }}/think{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "assistant" }}<|im_start|>assistant
{{ if and $last .Thinking }}
<think>{{ .Thinking }}</think>
{{ end }}{{ .Content }}<|im_end|>
{{ else }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}{{ end }}<|im_start|>assistant
"""


def info(kv: dict[str, Any] | None = None, chat_template: str | None = None) -> GGUFInfo:
    return GGUFInfo(path=Path("synthetic.gguf"), version=3, kv=dict(kv or {}), tensors=[],
                    alignment=32, data_offset=0, file_size=0, architecture="llama",
                    parameter_count=0, file_type=None, quantization="F32", context_length=None,
                    embedding_length=None, chat_template=chat_template)


def bundled_template(name: str) -> str:
    return template_root().joinpath("chat").joinpath(name).read_text(encoding="utf-8")


@pytest.mark.parametrize(("template", "expected"), [
    (None, ["completion"]),
    ("{{ .Prompt }}", ["completion"]),
    ("{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}", ["completion", "tools"]),
    ("{{ range .Messages }}{{ $.Tools }}{{ end }}", ["completion", "tools"]),
    ("<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>", ["completion", "insert"]),
    (QWEN3_LIKE, ["completion", "thinking"]),
    # a word in the text is not a variable: the old substring guess said "tools" here
    ("You have no tools. {{ .Prompt }}", ["completion"]),
    ("{{ range .Messages }}{{ .ToolCalls }}{{ end }}", ["completion"]),
    # .Thinking outside a range over .Messages shows no place for thinking (InferTags)
    ("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}", ["completion"]),
])
def test_go_templates(template: str | None, expected: list[str]) -> None:
    assert capabilities_of(info(), template) == expected


def test_embedding_models_come_from_the_pooling_type() -> None:
    assert capabilities_of(info({"llama.pooling_type": 1}), None) == ["embedding"]


def test_vision_comes_from_gguf_metadata_or_a_projector() -> None:
    assert capabilities_of(info({"llama.vision.block_count": 24}), None) == \
        ["completion", "vision"]
    assert capabilities_of(info(), None, projector=True) == ["completion", "vision"]


@pytest.mark.parametrize(("chat_template", "features"), [
    ("{% for m in messages %}{{ m.content }}{% endfor %}", TemplateFeatures()),
    ("{% if tools %}{{ tools | tojson }}{% endif %}", TemplateFeatures(tools=True)),
    ("{{ m.tool_call }}", TemplateFeatures(tools=True)),
    ("<think>\n{{ reasoning }}\n</think>", TemplateFeatures(thinking_tags=("<think>", "</think>"))),
    ("{% set c = message.content.split('</think>')[-1] %}",
     TemplateFeatures(thinking_tags=("<think>", "</think>"))),
])
def test_gguf_chat_templates_by_ollamas_rules(chat_template: str,
                                               features: TemplateFeatures) -> None:
    assert template_features(None, chat_template) == features


def test_a_go_template_decides_over_the_gguf_one_unless_it_does_not_parse() -> None:
    jinja_tools = "{% if tools %}{{ tools }}{% endif %}"
    assert template_features("{{ .Prompt }}", jinja_tools) == TemplateFeatures()
    # the render falls back to the GGUF chat template, so the capabilities do too
    assert template_features("{{ with .X }}{{ end }}", jinja_tools).tools
    assert template_features("{{ with .X }}{{ end }}", None) == TemplateFeatures()


def test_bundled_models_list_what_their_templates_express() -> None:
    smollm2 = bundled_template("smollm2.gotmpl")
    assert capabilities_of(info(), smollm2) == ["completion", "tools"]
    assert capabilities_of(info(), bundled_template("gemma3.gotmpl")) == ["completion"]


@pytest.mark.parametrize(("template", "tags"), [
    (QWEN3_LIKE, ("<think>", "</think>")),
    ("{{ range .Messages }}{{ if .Thinking }}Thought: {{ .Thinking }} Done.{{ end }}{{ end }}",
     ("Thought:", "Done.")),
    # a nearer range over something else hides it
    ("{{ range .Messages }}{{ range .Xs }}<t>{{ .Thinking }}</t>{{ end }}{{ end }}", ("", "")),
    # an `else if` branch sits in a list of its own, as Go parses it: no text around it
    ('{{ range .Messages }}{{ if eq .Role "u" }}x{{ else if .Thinking }}<t>{{ end }}{{ end }}',
     ("", "")),
])
def test_thinking_tags_are_inferred_as_ollama_does(template: str,
                                                   tags: tuple[str, str]) -> None:
    assert parse(template).thinking_tags() == tags


def test_identifiers_are_the_lowercased_names_read() -> None:
    names = parse('{{ range $i, $m := .Messages }}{{ $m.Role }}{{ $.Tools }}'
                  '{{ if (eq .X.Y 1) }}{{ end }}{{ end }}').identifiers()
    assert {"messages", "role", "tools", "x", "y", "$m", "$"} <= names
