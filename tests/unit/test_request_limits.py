"""Bounds on work a request can buy: schema and grammar limits, template budgets, the cap on
held request bodies, blob writes against free disk, and the 499 line for a cut stream."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from ollamactl.runtime.http.app import RequestLog
from ollamactl.runtime.http.limits import BodyLimit
from ollamactl.runtime.prompting import gotemplate, template_worker
from ollamactl.runtime.prompting.grammar import (
    MAX_GRAMMAR_BYTES,
    MAX_GRAMMAR_NESTING,
    MAX_PATTERN_CHAIN,
    MAX_PATTERN_COST,
    MAX_REPETITION,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    GrammarError,
    SchemaLimit,
    check_format,
    check_gbnf,
    check_schema_limits,
    compile_constraint,
    gbnf_nesting,
    pattern_chain,
    tools_constraint,
)
from ollamactl.runtime.prompting.prompt import render_generate
from ollamactl.runtime.prompting.render import TemplateError
from ollamactl.runtime.prompting.tools import InvalidTools, parse_tools
from ollamactl.runtime.store.blobs import InsufficientSpace
from ollamactl.runtime.store.create import create_model
from ollamactl.runtime.store.manifests import Store
from ollamactl.runtime.store.models import LocalModel
from tests.gguf_builder import smollm2_path

# -- schemas and grammars ---------------------------------------------------------------------


def _nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    inner = schema
    for _ in range(levels):
        inner["items"] = {}
        inner = inner["items"]
    return schema


@pytest.mark.parametrize(("schema", "named"), [
    ({"type": "string", "maxLength": MAX_REPETITION + 1}, "/maxLength is 1001"),
    ({"type": "string", "minLength": 10**9}, "/minLength is 1000000000"),
    ({"type": "array", "minItems": 100_000_000}, "/minItems is 100000000"),
    ({"type": "array", "maxItems": 1e6}, "/maxItems is 1000000.0"),
    ({"properties": {"a": {"pattern": "^x{2000}$"}}}, "/properties/a/pattern repeats {2000}"),
    ({"pattern": "^x{1_000_000}$"}, "repeats {1_000_000}"),         # int() reads underscores
    ({"pattern": "^x{0,\u0665\u0660\u0660\u0660}$"}, "repeats"),    # and Arabic-Indic digits
    ({"pattern": "a" * 2000}, "pattern of 2000 characters"),
    ({"enum": ["x" * 1000] * 70}, f"over the limit of {MAX_SCHEMA_BYTES} bytes"),
    ({"properties": {"k" * 257: {}}}, "a key of 257 characters"),
    (_nested(MAX_SCHEMA_DEPTH), f"nests more than {MAX_SCHEMA_DEPTH} levels"),
    (_nested(100_000), "nests more than"),                            # no recursion on the way
])
def test_schema_past_a_limit_is_refused_naming_it(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(SchemaLimit) as caught:
        check_schema_limits(schema, "format")
    assert str(caught.value).startswith("format: ")
    assert named in str(caught.value)


@pytest.mark.parametrize(("pattern", "chain"), [
    ("^a*a*a*$", 3), ("^([^x]*){20}$", 20), ("^(a?){500}a{500}$", 500), ("^(.*){16}$", 16),
    ("^a*?a*?$", 4),                              # the converter reads *? as (*)?
    ("^(a+){16}$", 1), ("^(a[^x]*){12}$", 1),     # something required between the loops
    ("^P(\\d+Y)?(\\d+M)?(\\d+W)?(\\d+D)?(T(\\d+H)?(\\d+M)?(\\d+S)?)?$", 5),
    ("^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$", 1),
    ("^(\\+\\d{1,3}\\s?)?\\(?\\d{3}\\)?[\\s.-]?\\d{3}[\\s.-]?\\d{4}$", 4),
    ("^[a-z]{1,1000}$", 1), ("(" * 300 + "a?" + ")*" * 300, 301), ("a{", 0), ("[", 0),
])
def test_pattern_chain(pattern: str, chain: int) -> None:
    assert pattern_chain(pattern) == chain


def test_ambiguous_patterns_are_refused() -> None:
    with pytest.raises(SchemaLimit, match=f"chains 9 optional items .* limit of "
                                          f"{MAX_PATTERN_CHAIN}"):
        check_schema_limits({"pattern": "^(.?){9}$"}, "format")
    at_limit = {"type": "string", "pattern": "^([^x]*){8}$"}
    check_schema_limits({"anyOf": [at_limit] * 2}, "format")
    with pytest.raises(SchemaLimit, match=f"together cost more than {MAX_PATTERN_COST}"):
        check_schema_limits({"anyOf": [at_limit] * 3}, "format")


def test_schema_at_the_limits_passes() -> None:
    schema = {"type": "object", "properties": {
        "s": {"type": "string", "minLength": MAX_REPETITION, "maxLength": MAX_REPETITION,
              "pattern": "^[a-z]{1,1000}$"},
        "a": {"type": "array", "items": _nested(MAX_SCHEMA_DEPTH - 6),
              "minItems": 1, "maxItems": MAX_REPETITION},
        "k" * 256: {"enum": ["x" * 100] * 100}}}
    check_schema_limits(schema, "format")
    assert check_format(schema) == {"kind": "schema", "schema": schema}


def test_limits_come_before_the_validator_and_reach_tools() -> None:
    deep = _nested(5000)  # jsonschema's check_schema would recurse until RecursionError
    with pytest.raises(SchemaLimit, match="nests more than"):
        check_format(deep)
    with pytest.raises(InvalidTools, match=r"tools\[0\]\.function\.parameters: /properties/x/"
                                           "maxLength is 20000"):
        parse_tools([{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "string", "maxLength": 20000}}}}}])


def test_gbnf_nesting_skips_literals_classes_and_comments() -> None:
    assert gbnf_nesting('root ::= ("(" [(] ( "a" ) ) # ((((\nx ::= "\\"(("') == 2
    deep = "root ::= " + "(" * (MAX_GRAMMAR_NESTING + 1) + '"a"' + ")" * (MAX_GRAMMAR_NESTING + 1)
    with pytest.raises(SchemaLimit, match="nests 2049 groups deep"):
        check_gbnf(deep)
    with pytest.raises(SchemaLimit, match="bytes, over the limit"):
        check_gbnf('root ::= "' + "a" * MAX_GRAMMAR_BYTES + '"')
    check_gbnf("root ::= " + "(" * 100 + '"a"' + ")" * 100)


def test_grammar_size_is_bounded_while_it_is_built() -> None:
    wide = {"type": "object", "properties": {
        f"p{i}": {"type": "array", "items": {"type": "string", "maxLength": 1000},
                  "minItems": 1000} for i in range(300)}}
    tools = parse_tools([{"type": "function", "function": {"name": f"t{i}", "parameters": wide}}
                         for i in range(2)])
    with pytest.raises(SchemaLimit, match=f"over the limit of {MAX_GRAMMAR_BYTES} bytes"):
        compile_constraint(tools_constraint(tools) or {})


def test_what_the_runner_gets_is_checked_gbnf() -> None:
    full = compile_constraint({"kind": "schema", "schema": {"type": "string", "maxLength": 3}})
    assert full.wire() == {"gbnf": full.full}
    tools = parse_tools([{"type": "function", "function": {"name": "f"}}])
    lazy = compile_constraint(tools_constraint(tools) or {}).wire()
    assert lazy["gbnf"].count("\nroot ::= ") == 1
    assert lazy["triggers"][0] == "(<tool_call>)"
    with pytest.raises(GrammarError, match="unsupported JSON Schema"):
        compile_constraint({"kind": "schema", "schema": {"type": "strange"}})


def test_the_server_builds_grammars_without_loading_libllama() -> None:
    code = ("import sys\nfrom ollamactl.runtime.prompting.grammar import compile_constraint\n"
            "compile_constraint({'kind': 'json'}).wire()\n"
            "print(sorted(m for m in sys.modules if m.startswith('llama_cpp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# -- templates --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    store = Store(tmp_path_factory.mktemp("limits-store"))
    create_model(store, "smol", model_digest=store.import_file(smollm2_path()))
    return store.resolve("smol")


def test_go_template_budgets() -> None:
    with pytest.raises(gotemplate.TemplateExecError, match="more than 1000000 steps"):
        gotemplate.parse("{{ range 65536 }}{{ range 65536 }}{{ end }}{{ end }}").render({})
    doubling = '{{ $x := "ab" }}{{ range 64 }}{{ $x = print $x $x }}{{ end }}'
    with pytest.raises(gotemplate.TemplateExecError, match="output too large"):
        gotemplate.parse(doubling).render({})  # built strings count, not only what is written
    with pytest.raises(gotemplate.TemplateExecError, match="took too long"):
        gotemplate.parse("{{ range 65536 }}{{ end }}").render({}, deadline=0.0)


@pytest.mark.parametrize(("template", "stopped"), [
    ("{% set x = 'a' * 10**9 %}", "a '*' would make more than"),
    ("{% set x = [1] * 10**9 %}", "a '*' would make more than"),
    ("{{ 10 ** (10 ** 8) }}{% if 1 %}{% endif %}", "a '**' would make an integer"),
    ("{% set n = namespace(v=3) %}{% for i in range(20) %}{% set n.v = n.v * n.v %}"
     "{% endfor %}", "a '*' would make an integer"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "more than 4000000 steps"),
    ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "output too large"),
])
def test_jinja_budgets(smol: LocalModel, template: str, stopped: str) -> None:
    with pytest.raises(TemplateError, match=re.escape("chat template stopped: " + stopped)):
        render_generate(smol, "hi", template=template)


def test_templates_past_the_length_limit_are_refused(smol: LocalModel) -> None:
    huge = "{% if 1 %}{% endif %}" + "x" * gotemplate.MAX_TEMPLATE_LENGTH
    with pytest.raises(TemplateError, match="over the limit of 1048576"):
        render_generate(smol, "hi", template=huge)
    with pytest.raises(TemplateError, match="too long"):
        render_generate(smol, "hi", template="x" * (gotemplate.MAX_TEMPLATE_LENGTH + 1))


def test_jinja_memory_cap_and_ordinary_arithmetic(smol: LocalModel) -> None:
    doubling = ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                "{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
    with pytest.raises(TemplateError, match="needed more than 1024 MiB"):
        render_generate(smol, "hi", template=doubling)
    fine = "{% if 1 %}{% endif %}{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 7 % 2 }}"
    assert render_generate(smol, "hi", template=fine).text == "1024 ababab [1, 2] 1"


def test_a_stuck_worker_is_killed_and_replaced(smol: LocalModel,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    slow = "{% for i in range(1900) %}{% for j in range(1900) %}{% endfor %}{% endfor %}"
    monkeypatch.setattr(template_worker, "KILL_AFTER_S", 0.05)
    with pytest.raises(TemplateError, match="the render was stopped"):
        render_generate(smol, "hi", template=slow)
    monkeypatch.undo()
    assert render_generate(smol, "hi", template="{{ .Prompt }}!").text == "hi!"


def test_a_worker_bug_reaches_the_server_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(TemplateError, match="render failed"):
        template_worker.render({"source": {}, "messages": []})
    assert [r for r in caplog.records if "TypeError" in r.getMessage()]


# -- held request bodies ----------------------------------------------------------------------

class Answer(NamedTuple):
    status: int
    body: bytes


def _drive(limit: BodyLimit, chunks: list[bytes], declared: int | None = None) -> Answer:
    """One request through ``limit``: its body in ``chunks``; the status and body sent."""
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
               for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    scope = {"type": "http", "path": "/api/chat", "headers": headers}
    asyncio.run(limit(scope, receive, send))  # type: ignore[arg-type]
    return Answer(int(sent[0]["status"]), b"".join(m.get("body", b"") for m in sent[1:]))


def test_held_bodies_are_capped_and_released() -> None:
    held_while_reading: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        held_while_reading.append(limit.held)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limit = BodyLimit(app, max_bytes=100, max_held=150)
    assert _drive(limit, [b"x" * 60, b"x" * 40], declared=100).status == 200
    assert held_while_reading == [100] and limit.held == 0
    limit.held = 100  # another request's body is held meanwhile
    busy = _drive(limit, [b"x" * 60], declared=60)
    assert busy.status == 503 and b"maximum pending requests exceeded" in busy.body
    chunked = _drive(limit, [b"x" * 30, b"x" * 30])  # no Content-Length: counted as it comes
    assert chunked.status == 503 and limit.held == 100
    limit.held = 0
    assert _drive(limit, [b"x" * 60, b"x" * 60]).status == 413
    assert limit.held == 0


# -- blobs against free disk ------------------------------------------------------------------

class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_blob_write_keeps_a_margin_of_free_disk(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    disk = [100 << 30, 10 << 30]  # size, free
    monkeypatch.setattr("ollamactl.runtime.store.blobs.shutil.disk_usage",
                        lambda path: Usage(disk[0], disk[0] - disk[1], disk[1]))
    with pytest.raises(InsufficientSpace, match=r"this blob needs 9\.50 GiB more and 1\.00 GiB"):
        store.write_blob(iter([b"never read"]), total=int(9.5 * (1 << 30)))

    def shrinking() -> Iterator[bytes]:
        for _ in range(100):
            disk[1] -= 1 << 30  # something else fills the disk as the upload goes on
            yield b"\0" * (32 << 20)

    with pytest.raises(InsufficientSpace, match=r"1\.00 GiB must stay free"):
        store.write_blob(shrinking())
    assert not list((tmp_path / "blobs").iterdir())
    disk[:] = [4 << 30, 300 << 20]  # a small disk keeps 5% of itself free
    assert store.write_blob([b"fits"]).startswith("sha256:")
    with pytest.raises(InsufficientSpace, match="needs 200 MiB more and 204 MiB must stay free"):
        store.write_blob(iter([b"never read"]), total=200 << 20)


# -- a stream cut by its client ---------------------------------------------------------------

def test_a_stream_cut_by_its_client_is_logged_as_499(caplog: pytest.LogCaptureFixture) -> None:
    async def streaming_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}\n", "more_body": True})
        assert (await receive())["type"] == "http.disconnect"  # the client hung up

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/api/generate", "headers": [],
             "client": ("127.0.0.1", 5)}
    with caplog.at_level(logging.INFO):
        asyncio.run(RequestLog(streaming_app)(scope, receive, send))  # type: ignore[arg-type]
    assert [r for r in caplog.records if "/api/generate status=499" in r.getMessage()]
