"""The Go-template subset: Ollama-style templates render as Go would; the rest is refused."""

from __future__ import annotations

from typing import Any

import pytest

from ollamactl.runtime.prompting.gotemplate import TemplateExecError, TemplateSyntaxError, parse

MESSAGES = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
            {"role": "assistant", "content": "A"}]


@pytest.mark.parametrize(("source", "values", "expected"), [
    ("{{ .Prompt }}", {"Prompt": "p"}, "p"),
    ("a {{- .X -}} b", {"X": "x"}, "axb"),
    ("{{/* note */}}{{ .X }}", {"X": 1}, "1"),
    ("{{ if .X }}yes{{ else if .Y }}y{{ else }}no{{ end }}", {"X": "", "Y": [1]}, "y"),
    ('{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}', {"Messages": MESSAGES},
     "system=S;user=U;assistant=A;"),
    ('{{ range $i, $m := .Messages }}{{ $i }}{{ if eq $m.Role "user" "system" }}*{{ end }}'
     '{{ end }}', {"Messages": MESSAGES}, "0*1*2"),
    ('{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}'
     '{{ if $last }}LAST:{{ .Content }}{{ end }}{{ end }}', {"Messages": MESSAGES}, "LAST:A"),
    ("{{ range .Xs }}x{{ else }}empty{{ end }}", {"Xs": []}, "empty"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", {}, "2"),
    ('{{ and .A .B }}|{{ or .A .B }}|{{ not .A }}', {"A": "a", "B": ""}, "|a|false"),
    ("{{ json .T }}", {"T": {"k": [1, "v"]}}, '{"k":[1,"v"]}'),
    ("{{ index .L 1 }}{{ len .L }}", {"L": ["a", "b"]}, "b2"),
    ("{{ range .Messages }}{{ $.System }}{{ end }}", {"Messages": [{}], "System": "s"}, "s"),
    ("{{ range .Messages }}{{ .ToolCalls }}{{ end }}",
     {"Messages": [{"tool_calls": "tc"}]}, "tc"),
    ("{{ lt 1 2 }}{{ ge 1 2 }}{{ ne 1 2 }}", {}, "truefalsetrue"),
    ("{{ print .A `raw` 3 }}", {"A": "a"}, "araw3"),
])
def test_renders_like_go(source: str, values: dict[str, Any], expected: str) -> None:
    assert parse(source).render(values) == expected


def test_cut_at_response() -> None:
    template = parse("<u>{{ .Prompt }}</u><a>{{ .Response }}</a>")
    assert template.render({"Prompt": "p", "Response": ""}, cut_at_response=True) == "<u>p</u><a>"
    assert not template.uses_messages


def test_json_hook_wraps_output() -> None:
    out = parse("{{ json .X }}").render({"X": [1]}, json_hook=lambda s: f"<{s}>")
    assert out == "<[1]>"


@pytest.mark.parametrize("source", [
    "{{ .X | printf }}", "{{ with .X }}{{ end }}", '{{ define "x" }}{{ end }}',
    "{{ if .X }}", "{{ end }}", "{{ else }}", "{{ nosuchfunc 1 }}", "{{ .X", "{{/* open }}",
    "{{ (eq 1 1 }}", '{{ "unterminated }}',
])
def test_unsupported_or_broken_syntax_is_refused(source: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        parse(source)


@pytest.mark.parametrize(("source", "values"), [
    ("{{ $nope }}", {}),
    ("{{ slice .L 5 }}", {"L": [1]}),
    ("{{ index .L 3 }}", {"L": [1]}),
    ("{{ len .N }}", {"N": 3}),
    ("{{ .S.Field }}", {"S": "text"}),
    ("{{ lt 1 \"a\" }}", {}),
])
def test_runtime_errors_are_clear(source: str, values: dict[str, Any]) -> None:
    with pytest.raises(TemplateExecError, match=r"^template: "):
        parse(source).render(values)


def test_deep_nesting_is_bounded() -> None:
    with pytest.raises(TemplateSyntaxError, match="nesting too deep"):
        parse("{{ if true }}" * 100 + "{{ end }}" * 100)
