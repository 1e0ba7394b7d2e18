"""The interactive chat of ``ollamactl run MODEL`` on a terminal, line for line Ollama's: the
``>>>`` prompt, ``\"\"\"`` multi-line input, the slash commands (``/set``, ``/show``, ``/load``,
``/save``, ``/clear``, ``/list``, ``/bye``, ``/?``) with Ollama's words, and readline history in
``~/.ollama/history``.

:meth:`Repl.handle` takes one line and does what Ollama does with it, so the commands are tested
without a terminal; :meth:`Repl.loop` only reads lines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamactl.cli.chat import Session, chat, infer_think, load, save
from ollamactl.cli.gofmt import go_quote, go_value
from ollamactl.errors import ApiRequestFailed, ModelMissing, OllamactlError
from ollamactl.settings import Invalid, parse_bool

if TYPE_CHECKING:
    from ollamactl.client import Client

PROMPT = ">>> "
ALT_PROMPT = "... "
MULTILINE = '"""'
HISTORY_LIMIT = 100  # lines, as Ollama keeps

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""

USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking
"""

USAGE_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit ollamactl (/bye)
"""

USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""

USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters
"""


def parameter_value(name: str, values: list[str]) -> Any:
    """The typed value of ``/set parameter NAME VALUE...``: every value for ``stop``, the first
    for the others (as Ollama's FormatParams).

    Raises:
        ValueError: an unknown parameter or a value of the wrong type.
    """
    from ollamactl.runtime.store.options import OPTIONS, parse_parameter

    spec = OPTIONS.get(name)
    if spec is None:
        raise ValueError(f"unknown parameter '{name}'")
    if spec.kind == "stop":
        return list(values)
    try:
        return parse_parameter(name, values[0])
    except OllamactlError as exc:
        raise ValueError(exc.message) from None


def parameters_lines(model_parameters: str, options: dict[str, Any]) -> list[str]:
    """``/show parameters``: the model's, then the session's (``/set parameter``)."""
    lines = ["Model defined parameters:"]
    if model_parameters:
        lines += [f"  {line}" for line in model_parameters.split("\n")]
    else:
        lines.append("  No additional parameters were specified for this model.")
    lines.append("")
    if options:
        lines.append("User defined parameters:")
        lines += [f"  {name:<30} {go_value(value)}" for name, value in options.items()]
        lines.append("")
    return lines


class History:
    """readline history in ``~/.ollama/history`` (100 lines), unless OLLAMA_NOHISTORY or
    ``/set nohistory``; nothing at all where Python has no readline."""

    def __init__(self, path: Path, *, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        try:
            import readline as module
        except ImportError:
            module = None  # type: ignore[assignment]
        self.readline: Any = module
        if module is None:
            return
        module.set_history_length(HISTORY_LIMIT)
        try:
            if path.exists():
                module.read_history_file(path)
        except OSError:
            pass
        self.set(enabled)

    @classmethod
    def for_user(cls) -> History:
        """``~/.ollama/history``, off when OLLAMA_NOHISTORY is true (as Ollama reads it: any
        value that is not a boolean counts as true)."""
        value = os.environ.get("OLLAMA_NOHISTORY", "")
        try:
            off = bool(value.strip()) and parse_bool(value)
        except Invalid:
            off = True
        return cls(Path.home() / ".ollama" / "history", enabled=not off)

    def set(self, enabled: bool) -> None:
        self.enabled = enabled
        if self.readline is not None:
            self.readline.set_auto_history(enabled)

    def save(self) -> None:
        """Write the history after each line, as Ollama does (a crash loses nothing)."""
        if self.readline is None or not self.enabled:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(self.path)
        except OSError:
            return


class Repl:
    """One interactive session: the line being composed, the multi-line state, the session."""

    def __init__(self, client: Client, session: Session, *, explicit_think: bool,
                 history: History | None = None) -> None:
        self.client = client
        self.session = session
        self.explicit_think = explicit_think
        self.history = history
        self.pending = ""     # what the next message will say (Ollama's sb)
        self.multiline = ""   # "", "prompt" or "system": inside a \"\"\" block

    def loop(self) -> None:
        while True:
            try:
                line = input(ALT_PROMPT if self.multiline else PROMPT)
            except EOFError:
                print()
                return
            except KeyboardInterrupt:
                print("\nUse Ctrl + d or /bye to exit.")
                self.pending, self.multiline = "", ""
                continue
            if self.history is not None:
                self.history.save()
            if not self.handle(line):
                return

    def handle(self, line: str) -> bool:
        """Do what Ollama does with one line; False means leave (``/bye``)."""
        if self.multiline:
            before = line.removesuffix(MULTILINE)
            self.pending += before
            if before == line:
                self.pending += "\n"
                return True
            if self.multiline == "system":
                self.session.system = self.pending
                self.session.messages.append({"role": "system", "content": self.pending})
                print("Set system message.")
                self.pending = ""
            self.multiline = ""
        elif line.startswith(MULTILINE):
            text = line.removeprefix(MULTILINE)
            body = text.removesuffix(MULTILINE)
            self.pending += body
            if body == text:
                self.pending += "\n"
                self.multiline = "prompt"
        elif line.startswith("/"):
            return self.command(line)
        else:
            self.pending += line
        if self.pending and not self.multiline:
            self.send()
        return True

    def command(self, line: str) -> bool:
        args = line.split()
        for prefix, action in (("/list", self.list_models), ("/load", self.load),
                               ("/save", self.save), ("/clear", self.clear),
                               ("/set", self.set), ("/show", self.show),
                               ("/help", self.help), ("/?", self.help)):
            if line.startswith(prefix):
                action(args)
                return True
        if line.startswith(("/exit", "/bye")):
            return False
        print(f"Unknown command '{args[0]}'. Type /? for help")
        return True

    def send(self) -> None:
        self.session.messages.append({"role": "user", "content": self.pending})
        self.pending = ""
        try:
            answer = chat(self.client, self.session)
        except ApiRequestFailed as exc:
            if "does not support thinking" in exc.message or "invalid think value" in exc.message:
                print(f"error: {exc.message}")
                return
            raise
        if answer is not None:
            self.session.messages.append(answer)

    # -- commands ---------------------------------------------------------------------------
    def list_models(self, args: list[str]) -> None:
        from ollamactl.cli.models import list_lines

        print("\n".join(list_lines(self.client.tags(), args[1] if len(args) > 1 else "")))

    def load(self, args: list[str]) -> None:
        if len(args) != 2:
            print("Usage:\n  /load <modelname>")
            return
        before = self.session.copy()
        session = self.session
        session.model, session.messages, session.loaded_messages = args[1], [], []
        print(f"Loading model '{session.model}'")
        try:
            info = self.client.show(session.model)
            session.apply_show(info)
            session.think = infer_think(list(info.get("capabilities") or []), session,
                                        explicit=self.explicit_think)
            load(self.client, session)
        except ModelMissing:
            print(f"Couldn't find model '{session.model}'")
            self.session = before
        except ApiRequestFailed as exc:
            if "does not support thinking" not in exc.message:
                raise
            print(f"error: {exc.message}")

    def save(self, args: list[str]) -> None:
        if len(args) != 2:
            print("Usage:\n  /save <modelname>")
            return
        try:
            save(self.client, self.session, args[1])
        except ApiRequestFailed as exc:
            if "invalid model name" not in exc.message:
                raise
            print(f"error: The model name '{args[1]}' is invalid")
            return
        print(f"Created new model '{args[1]}'")

    def clear(self, args: list[str]) -> None:
        system = self.session.system
        self.session.messages = [{"role": "system", "content": system}] if system else []
        print("Cleared session context")

    def set(self, args: list[str]) -> None:
        if len(args) < 2:
            sys.stderr.write(USAGE_SET + "\n")
            return
        session, what = self.session, args[1]
        if what in ("history", "nohistory"):
            if self.history is not None:
                self.history.set(what == "history")
        elif what in ("wordwrap", "nowordwrap"):
            session.wordwrap = what == "wordwrap"
            print(f"Set '{what}' mode.")
        elif what in ("verbose", "quiet"):
            session.verbose = what == "verbose"
            print(f"Set '{what}' mode.")
        elif what in ("think", "nothink"):
            level = args[2] if what == "think" and len(args) > 2 else ""
            session.think = level or what == "think"
            self.explicit_think = True
            self.warn_without_thinking()
            print(f"Set 'think' mode to '{level}'." if level else f"Set '{what}' mode.")
        elif what == "format":
            if len(args) < 3 or args[2] != "json":
                print("Invalid or missing format. For 'json' mode use '/set format json'")
            else:
                session.format = "json"
                print("Set format to 'json' mode.")
        elif what == "noformat":
            session.format = None
            print("Disabled format.")
        elif what == "parameter":
            self.set_parameter(args)
        elif what == "system":
            self.set_system(args)
        else:
            print(f"Unknown command '/set {what}'. Type /? for help")

    def set_parameter(self, args: list[str]) -> None:
        if len(args) < 4:
            sys.stderr.write(USAGE_PARAMETERS + "\n")
            return
        name, values = args[2], args[3:]
        try:
            value = parameter_value(name, values)
        except ValueError as exc:
            print(f"Couldn't set parameter: {go_quote(str(exc))}")
            return
        print(f"Set parameter '{name}' to '{', '.join(values)}'")
        self.session.options[name] = value

    def set_system(self, args: list[str]) -> None:
        if len(args) < 3:
            sys.stderr.write(USAGE_SET + "\n")
            return
        text = " ".join(args[2:])
        if text.startswith(MULTILINE):
            text = text.removeprefix(MULTILINE)
            if not text.endswith(MULTILINE):
                self.pending += text + "\n"  # Ollama joins this line to the next: a slip
                self.multiline = "system"
                return
            text = text.removesuffix(MULTILINE)
        self.session.system = text
        message = {"role": "system", "content": text}
        messages = self.session.messages
        if messages and messages[-1]["role"] == "system":
            messages[-1] = message
        else:
            messages.append(message)
        print("Set system message.")

    def warn_without_thinking(self) -> None:
        try:
            capabilities = self.client.show(self.session.model).get("capabilities") or []
        except OllamactlError:
            return
        if "thinking" not in capabilities:
            sys.stderr.write(f"warning: model {go_quote(self.session.model)} does not "
                             "support thinking output\n")

    def show(self, args: list[str]) -> None:
        if len(args) < 2:
            sys.stderr.write(USAGE_SHOW + "\n")
            return
        from ollamactl.cli.models import show_lines

        try:   # as Ollama's REPL: the session's system message and options, as if the model's
            info = self.client.show(self.session.model, system=self.session.system,
                                    options=self.session.options)
        except OllamactlError:
            print("error: couldn't get model")
            raise
        session, what = self.session, args[1]
        if what == "info":
            sys.stderr.write("\n".join(show_lines(info)) + "\n")
        elif what == "license":
            print(info.get("license") or "No license was specified for this model.")
        elif what == "modelfile":
            print(info.get("modelfile", ""))
        elif what == "parameters":
            print("\n".join(parameters_lines(str(info.get("parameters") or ""),
                                             session.options)))
        elif what == "system":
            system = session.system or str(info.get("system") or "")
            print(system + "\n" if system else "No system message was specified for this model.")
        elif what == "template":
            print(info.get("template") or "No prompt template was specified for this model.")
        else:
            print(f"Unknown command '/show {what}'. Type /? for help")

    def help(self, args: list[str]) -> None:
        topic = args[1] if len(args) > 1 else None
        text = {None: USAGE, "set": USAGE_SET, "/set": USAGE_SET, "show": USAGE_SHOW,
                "/show": USAGE_SHOW, "shortcut": USAGE_SHORTCUTS,
                "shortcuts": USAGE_SHORTCUTS}.get(topic, "")
        if text:
            sys.stderr.write(text + "\n")
