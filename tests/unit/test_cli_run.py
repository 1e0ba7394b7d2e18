"""``run``, ``ps``, ``show`` and the REPL as Ollama's CLI shows them, without a server: the
tables, the ``--verbose`` summary, thinking and word wrap, Go's value formats, the REPL's
commands (against a recording fake client) and run's flags through the real entry point."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ollamactl.cli import run as run_module
from ollamactl.cli.chat import Session
from ollamactl.cli.display import AnswerWriter, summary_lines
from ollamactl.cli.gofmt import go_float, go_json_value, go_value
from ollamactl.cli.models import list_lines, ps_lines, show_lines
from ollamactl.cli.repl import History, Repl, parameter_value, parameters_lines
from ollamactl.errors import ApiRequestFailed, ModelMissing, UsageError
from ollamactl.humanize import go_duration_ns
from tests.conftest import Cli

# -- tables ---------------------------------------------------------------------------------------


def test_ps_has_ollamas_columns_and_four_space_gaps() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0).astimezone()
    lines = ps_lines([{"name": "llama3:70b", "digest": "bcfb190ca3a7" + "0" * 52,
                       "size": 42_000_000_000, "size_vram": 21_840_000_000,
                       "context_length": 4096,
                       "expires_at": (now + timedelta(minutes=4, seconds=30)).isoformat()}],
                     now.timestamp())
    assert lines == [
        "NAME          ID              SIZE     PROCESSOR          CONTEXT    UNTIL",
        "llama3:70b    bcfb190ca3a7    42 GB    48%/52% CPU/GPU    4096       "
        "4 minutes from now"]


def test_list_filters_by_a_case_blind_prefix() -> None:
    stamp = datetime.now().astimezone().isoformat()
    data = {"models": [{"name": n, "digest": "a" * 64, "size": 98_000_000, "modified_at": stamp}
                       for n in ("smollm2:135m", "gemma3:270m")]}
    lines = list_lines(data, "SMOL")
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert len(lines) == 2 and lines[1].startswith("smollm2:135m    aaaaaaaaaaaa    98 MB    ")


SHOWN = {"details": {"parameter_size": "134.52M", "quantization_level": "Q4_1"},
         "model_info": {"general.architecture": "llama", "llama.context_length": 8192,
                        "llama.embedding_length": 576, "general.parameter_count": 134515008,
                        "tokenizer.ggml.tokens": ["<s>", "a", "b", "c"],
                        "tokenizer.ggml.scores": [1, 2, 3]},
         "capabilities": ["completion"],
         "parameters": f'{"stop":<30} "<|im_end|>"\n{"temperature":<30} 0.2',
         "system": "one\n\ntwo\nthree", "license": "Apache 2.0",
         "tensors": [{"name": "token_embd.weight", "type": "Q8_0", "shape": [576, 49152]}]}


def test_show_prints_ollamas_sections() -> None:
    assert show_lines(SHOWN) == [
        "  Model",
        "    architecture        llama",
        "    parameters          134.52M",
        "    context length      8192",
        "    embedding length    576",
        "    quantization        Q4_1",
        "",
        "  Capabilities",
        "    completion",
        "",
        "  Parameters",
        '    stop           "<|im_end|>"',
        "    temperature    0.2",
        "",
        "  System",
        "    one",
        "    two",
        "    ...",
        "",
        "  License",
        "    Apache 2.0",
        ""]


def test_show_verbose_adds_metadata_and_tensors() -> None:
    lines = show_lines(SHOWN, verbose=True)
    metadata = lines[lines.index("  Metadata") + 1:lines.index("  Tensors") - 1]
    assert metadata == [
        "    general.architecture       llama",
        "    general.parameter_count    1.34515008e+08",
        "    llama.context_length       8192",
        "    llama.embedding_length     576",
        "    tokenizer.ggml.scores      [1 2 3]",
        "    tokenizer.ggml.tokens      [<s> a b ...+1 more]"]
    assert "    token_embd.weight    Q8_0    [576 49152]" in lines


# -- Go's formats ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("nanoseconds", "text"), [
    (0, "0s"), (812, "812ns"), (1_500, "1.5µs"), (34_567_000, "34.567ms"),
    (2_050_000_000, "2.05s"), (63_200_000_000, "1m3.2s"), (3_600_000_000_000, "1h0m0s"),
    (1_234_567_891, "1.234567891s"), (-1_500_000, "-1.5ms")])
def test_go_duration_string(nanoseconds: int, text: str) -> None:
    assert go_duration_ns(nanoseconds) == text


def test_go_value_formats() -> None:
    assert [go_float(v) for v in (0.7, 5.0, 1e6, 1e-5, 100000.0, 0.0)] == \
        ["0.7", "5", "1e+06", "1e-05", "100000", "0"]
    assert [go_value(v) for v in (True, 5, ["a", "b"], "x")] == ["true", "5", "[a b]", "x"]
    assert go_json_value([1, 2.5, 10_000_000]) == "[1 2.5 1e+07]"


def test_verbose_summary_is_ollamas() -> None:
    assert summary_lines({"total_duration": 2_050_000_000, "load_duration": 37_348,
                          "prompt_eval_count": 37, "prompt_eval_duration": 122_000_000,
                          "eval_count": 8, "eval_duration": 88_708_117}) == [
        "total duration:       2.05s",
        "load duration:        37.348µs",
        "prompt eval count:    37 token(s)",
        "prompt eval duration: 122ms",
        "prompt eval rate:     303.28 tokens/s",
        "eval count:           8 token(s)",
        "eval duration:        88.708117ms",
        "eval rate:            90.18 tokens/s"]
    assert summary_lines({"eval_count": 0}) == []


# -- the answer on screen -------------------------------------------------------------------------

def written(pieces: Sequence[tuple[str, str]], **kw: Any) -> str:
    out = io.StringIO()
    writer = AnswerWriter(out, **{"wrap": False, "hide_thinking": False, "color": False,
                                  "width": 80, **kw})
    for thinking, content in pieces:
        writer.feed(thinking, content)
    return out.getvalue()


def test_thinking_is_framed_as_ollama_frames_it() -> None:
    pieces = [("Let me", ""), (" see.", ""), ("", "Blue."), ("", " Sky.")]
    assert written(pieces) == "Thinking...\nLet me see.\n...done thinking.\n\nBlue. Sky."
    assert written(pieces, hide_thinking=True) == "Blue. Sky."
    colored = written(pieces, color=True)
    assert colored.startswith("\x1b[38;5;245m\x1b[1mThinking...\n\x1b[0m\x1b[38;5;245m")
    assert "\x1b[38;5;245m\x1b[1m...done thinking.\n\n\x1b[0mBlue." in colored


def test_word_wrap_moves_the_word_being_written_to_the_next_line() -> None:
    out = written([("", "aaaa bbbb cccc")], wrap=True, width=14)  # lines of 9 columns
    assert out == "aaaa bbbb\x1b[4D\x1b[K\nbbbb cccc"
    assert written([("", "aaaa bbbb cccc")], wrap=False, width=14) == "aaaa bbbb cccc"


# -- the REPL -------------------------------------------------------------------------------------

class FakeClient:
    """Records what the REPL asks; answers like a server holding ``models``."""

    def __init__(self, models: Mapping[str, dict[str, Any]]) -> None:
        self.models = dict(models)
        self.chats: list[list[dict[str, Any]]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def show(self, model: str) -> dict[str, Any]:
        if model not in self.models:
            raise ModelMissing(f"model '{model}' not found")
        return self.models[model]

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], **kw: Any
             ) -> Iterator[dict[str, Any]]:
        self.chats.append([dict(m) for m in messages])
        self.requests.append(("chat", {"model": model, **kw}))
        yield {"message": {"role": "assistant", "content": "Ahoy"}, "done": False}
        yield {"message": {"role": "assistant", "content": ""}, "done": True,
               "eval_count": 1, "eval_duration": 1_000_000}

    def generate(self, model: str, prompt: str, **kw: Any) -> Any:
        self.requests.append(("generate", {"model": model, "prompt": prompt, **kw}))
        if not kw.get("stream"):
            return {}
        return iter([{"response": "Hi", "done": False},
                     {"response": "", "done": True, "total_duration": 1_000_000_000}])

    def create(self, model: str, **kw: Any) -> Iterator[dict[str, Any]]:
        if ":" in model and model.endswith(":"):
            raise ApiRequestFailed(400, "invalid model name")
        self.requests.append(("create", {"model": model, **kw}))
        yield {"status": "success"}

    def tags(self) -> dict[str, Any]:
        return {"models": []}

    def pull(self, model: str, **kw: Any) -> Iterator[dict[str, Any]]:
        raise ModelMissing(f"pull model manifest: file does not exist ({model})")


SMOL = {"details": {"parent_model": ""}, "capabilities": ["completion"], "parameters": "",
        "messages": []}


@pytest.fixture
def repl() -> Repl:
    client = FakeClient({"smollm2:135m": SMOL, "thinker": {**SMOL,
                                                           "capabilities": ["thinking"]}})
    return Repl(client, Session(model="smollm2:135m"), explicit_think=False)  # type: ignore[arg-type]


def fake(repl: Repl) -> FakeClient:
    assert isinstance(repl.client, FakeClient)
    return repl.client


def test_set_parameter_types_and_several_stop_words(repl: Repl,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    repl.handle("/set parameter num_predict 5")
    repl.handle("/set parameter stop a b")
    repl.handle("/set parameter temperature 0.5 ignored")
    repl.handle("/set parameter nope 1")
    repl.handle("/set parameter top_k many")
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["Set parameter 'num_predict' to '5'", "Set parameter 'stop' to 'a, b'",
                       "Set parameter 'temperature' to '0.5, ignored'"]
    assert out[3] == "Couldn't set parameter: \"unknown parameter 'nope'\""
    assert out[4].startswith("Couldn't set parameter: \"") and "top_k" in out[4]
    assert repl.session.options == {"num_predict": 5, "stop": ["a", "b"], "temperature": 0.5}
    assert parameters_lines("", repl.session.options) == [
        "Model defined parameters:",
        "  No additional parameters were specified for this model.",
        "",
        "User defined parameters:",
        f"  {'num_predict':<30} 5",
        f"  {'stop':<30} [a b]",
        f"  {'temperature':<30} 0.5",
        ""]
    with pytest.raises(ValueError, match="unknown parameter 'Stop'"):
        parameter_value("Stop", ["x"])


def test_multiline_prompt_and_system_messages(repl: Repl,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    repl.handle("/set system Be brief.")
    repl.handle("/set system Be briefer.")  # replaces the last system message
    assert repl.handle('"""Say') and repl.multiline == "prompt"
    assert repl.handle("") and repl.handle('hello"""') and not repl.multiline
    assert fake(repl).chats == [[{"role": "system", "content": "Be briefer."},
                                 {"role": "user", "content": "Say\n\nhello"}]]
    assert repl.session.messages[-1] == {"role": "assistant", "content": "Ahoy"}
    repl.handle('/set system """Talk')
    repl.handle('like a pirate."""')
    assert repl.session.system == "Talk\nlike a pirate."
    assert repl.session.messages[-1] == {"role": "system", "content": "Talk\nlike a pirate."}
    repl.handle('"""one line"""')
    assert fake(repl).chats[-1][-1] == {"role": "user", "content": "one line"}
    repl.handle("/clear")
    assert repl.session.messages == [{"role": "system", "content": "Talk\nlike a pirate."}]
    out = capsys.readouterr().out
    assert out.count("Set system message.") == 3 and "Cleared session context" in out


def test_session_settings(repl: Repl, capsys: pytest.CaptureFixture[str]) -> None:
    for line in ("/set format json", "/set format yaml", "/set verbose", "/set think high",
                 "/set nowordwrap", "/set bogus"):
        repl.handle(line)
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "Set format to 'json' mode.",
        "Invalid or missing format. For 'json' mode use '/set format json'",
        "Set 'verbose' mode.", "Set 'think' mode to 'high'.", "Set 'nowordwrap' mode.",
        "Unknown command '/set bogus'. Type /? for help"]
    assert 'warning: model "smollm2:135m" does not support thinking output' in out.err
    session = repl.session
    assert (session.format, session.verbose, session.think, session.wordwrap) == \
        ("json", True, "high", False)
    repl.handle("hi")
    assert fake(repl).requests[-1] == ("chat", {"model": "smollm2:135m", "stream": True,
                                                "options": {}, "format": "json",
                                                "think": "high"})
    assert "eval count:           1 token(s)" in capsys.readouterr().err
    repl.handle("/set noformat")
    assert repl.session.format is None


def test_commands_match_by_prefix_as_in_ollama(repl: Repl,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert repl.handle("/byebye") is False
    assert repl.handle("/exit") is False
    assert repl.handle("/nope x") is True
    repl.handle("/?")
    repl.handle("/help show")
    out = capsys.readouterr()
    assert out.out == "Unknown command '/nope'. Type /? for help\n"
    assert "/save <model>   Save your current session" in out.err
    assert "/show modelfile    Show Modelfile for this model" in out.err


def test_save_creates_from_the_session(repl: Repl, capsys: pytest.CaptureFixture[str]) -> None:
    repl.handle("/set system Be brief.")
    repl.handle("/set parameter num_predict 5")
    repl.handle("hi")
    repl.handle("/save mine")
    repl.handle("/save bad:")
    repl.handle("/save")
    _, create = fake(repl).requests[-1]
    assert create == {"model": "mine", "from_model": "smollm2:135m", "system": "Be brief.",
                      "parameters": {"num_predict": 5},
                      "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "Ahoy"}]}
    out = capsys.readouterr().out
    assert "Created new model 'mine'" in out
    assert "error: The model name 'bad:' is invalid" in out
    assert out.endswith("Usage:\n  /save <modelname>\n")


def test_load_switches_models_or_keeps_the_session(repl: Repl,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    repl.handle("hi")
    repl.handle("/load missing")
    assert repl.session.model == "smollm2:135m" and len(repl.session.messages) == 2
    repl.handle("/load thinker")
    assert repl.session.model == "thinker" and repl.session.messages == []
    assert repl.session.think is True  # a thinking model thinks unless told otherwise
    assert fake(repl).requests[-1] == ("generate", {"model": "thinker", "prompt": "",
                                                    "think": True})
    out = capsys.readouterr().out
    assert "Loading model 'missing'\nCouldn't find model 'missing'\n" in out
    assert "Loading model 'thinker'\n" in out


@pytest.mark.parametrize(("value", "enabled"), [
    ("", True), ("0", True), ("false", True), ("1", False), ("true", False),
    ("yes-please", False)])  # Ollama reads a value that is no boolean as true
def test_history_follows_ollama_nohistory(value: str, enabled: bool, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_NOHISTORY", value)
    history = History.for_user()
    try:
        assert history.path == tmp_path / ".ollama" / "history"
        assert history.enabled is enabled
        history.save()
        assert history.path.exists() is enabled
    finally:
        history.set(True)


# -- run's flags, through the entry point ---------------------------------------------------------

@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake_client = FakeClient({"smollm2:135m": SMOL, "thinker": {**SMOL,
                                                                "capabilities": ["thinking"]}})
    monkeypatch.setattr(run_module, "make_client", lambda: fake_client)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    return fake_client


def test_run_one_shot_with_flags(cli: Cli, client: FakeClient) -> None:
    result = cli("run", "smollm2:135m", "--think", "why", "blue", "--verbose",
                 "--keepalive", "10m", "--format", "json")
    assert result.code == 0, result.err
    assert result.out == "Hi\n\n"
    assert result.err == "total duration:       1s\n"
    assert client.requests == [("generate", {
        "model": "smollm2:135m", "prompt": "why blue", "stream": True, "options": {},
        "format": "json", "system": None, "keep_alive": "10m", "think": True})]


def test_run_think_levels_and_inferred_thinking(cli: Cli, client: FakeClient) -> None:
    assert cli("run", "--think=low", "smollm2:135m", "x").code == 0
    assert cli("run", "thinker", "x").code == 0
    assert cli("run", "thinker", "--think=false", "x").code == 0
    assert [r[1].get("think") for r in client.requests] == ["low", True, False]


@pytest.mark.parametrize(("args", "message"), [
    (("--think=maybe",), 'invalid value for --think: "maybe" (must be true, false, high, '
                         "medium, low, or max)"),
    (("--keepalive", "5"), 'time: invalid duration "5"'),
    (("--format", "yaml"), "invalid --format 'yaml': use json or a JSON schema")])
def test_run_refuses_bad_flags_in_one_line(cli: Cli, client: FakeClient, args: tuple[str, ...],
                                           message: str) -> None:
    result = cli("run", "smollm2:135m", *args, "x")
    assert (result.code, result.error) == (2, message)
    assert client.requests == []


def test_run_prepends_piped_input(cli: Cli, client: FakeClient,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("some text"))
    assert cli("run", "smollm2:135m", "summarize").code == 0
    assert client.requests[0][1]["prompt"] == "some text summarize"
    assert cli("run", "nope", "x").code == 1


def test_think_value_parser() -> None:
    assert [run_module.think_value(v) for v in ("", "true", "false", "high")] == \
        [True, True, False, "high"]
    with pytest.raises(UsageError):
        run_module.think_value("yes")
    assert run_module.keep_alive_value("-1m") == -1
