"""``ollamactl run MODEL [PROMPT]``: one-shot answer, preload (``""``), or an interactive chat.

The REPL follows Ollama's: readline history, ``\"\"\"`` multi-line input, ``/set parameter
NAME VALUE``, ``/set system TEXT``, ``/show info``, ``/clear``, ``/bye``; Ctrl-C stops the
current answer, Ctrl-D leaves. A spinner turns on stderr while the model loads.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ollamactl.cli.models import make_client, show_lines
from ollamactl.errors import ModelMissing, OllamactlError

if TYPE_CHECKING:
    from ollamactl.client import Client

HELP = """Available Commands:
  /set parameter NAME VALUE   Set a parameter (e.g. /set parameter num_ctx 4096)
  /set system TEXT            Set the system message
  /set format json            Enable JSON mode (/set noformat turns it off)
  /show info                  Show details for this model
  /clear                      Clear the session context
  /bye                        Exit
  /?, /help                   Help for a command

Use \"\"\" to begin a multi-line message."""


class Spinner:
    """A spinner on stderr while something slow happens (only on a terminal)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            if self.done.wait(0.1):
                break
            sys.stderr.write(f"\r{frame} ")
            sys.stderr.flush()
        sys.stderr.write("\r  \r")

    def __enter__(self) -> Spinner:
        if sys.stderr.isatty():
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()


def ensure_loaded(client: Client, model: str) -> None:
    """Preload the model; pull it first when the server does not have it (bundled models)."""
    with Spinner():
        try:
            client.load(model)
            return
        except ModelMissing:
            pass
    for _ in client.pull(model):
        pass
    with Spinner():
        client.load(model)


def chat_once(client: Client, model: str, messages: list[dict[str, Any]],
              options: dict[str, Any], *, format: str | None = None) -> str:
    """Stream one answer to stdout; Ctrl-C stops it and keeps what was said."""
    answer: list[str] = []
    try:
        for item in client.chat(model, messages, stream=True, options=options, format=format):
            piece = (item.get("message") or {}).get("content", "")
            if piece:
                answer.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(answer)


def run(model: str = typer.Argument(..., help="Model to run."),
        prompt: list[str] | None = typer.Argument(None, help="Prompt; \"\" only preloads."),
        ) -> None:
    """Run a model: one prompt, or an interactive chat."""
    client = make_client()
    text = " ".join(prompt or [])
    ensure_loaded(client, model)
    if prompt and not text.strip():
        return  # `run MODEL ""` only preloads, as the seed shows
    if text:
        chat_once(client, model, [{"role": "user", "content": text}], {})
        return
    if not sys.stdin.isatty():
        text = sys.stdin.read().strip()
        if text:
            chat_once(client, model, [{"role": "user", "content": text}], {})
        return
    Repl(client, model).loop()


class Repl:
    """The interactive session: message history, options and system message."""

    def __init__(self, client: Client, model: str) -> None:
        self.client = client
        self.model = model
        self.messages: list[dict[str, Any]] = []
        self.options: dict[str, Any] = {}
        self.system: str | None = None
        self.format: str | None = None

    def loop(self) -> None:
        _setup_history()
        while True:
            try:
                line = self.read_message()
            except EOFError:
                sys.stdout.write("\n")
                return
            except KeyboardInterrupt:
                sys.stdout.write("\nUse Ctrl + d or /bye to exit.\n")
                continue
            if line is None:
                return
            if not line.strip():
                continue
            if line.startswith("/"):
                if not self.command(line.strip()):
                    return
                continue
            turn = ([{"role": "system", "content": self.system}] if self.system else [])
            self.messages.append({"role": "user", "content": line})
            answer = chat_once(self.client, self.model, turn + self.messages, self.options,
                               format=self.format)
            self.messages.append({"role": "assistant", "content": answer})

    def read_message(self) -> str | None:
        line = input(">>> ")
        if not line.startswith('"""'):
            return line
        parts = [line[3:]]
        while not parts[-1].endswith('"""'):
            parts.append(input("... "))
        text = "\n".join(parts)
        return text[:-3]

    def command(self, line: str) -> bool:
        """Handle a slash command; False means leave."""
        words = line.split()
        head = words[0]
        if head in ("/bye", "/exit"):
            return False
        if head in ("/?", "/help"):
            print(HELP)
        elif head == "/clear":
            self.messages.clear()
            print("Cleared session context")
        elif head == "/set" and len(words) >= 4 and words[1] == "parameter":
            self.set_parameter(words[2], " ".join(words[3:]))
        elif head == "/set" and len(words) >= 3 and words[1] == "system":
            self.system = line.split(None, 2)[2]
            print("Set system message.")
        elif words[:3] == ["/set", "format", "json"]:
            self.format = "json"
            print("Set format to 'json' mode.")
        elif words[:2] == ["/set", "noformat"]:
            self.format = None
            print("Disabled format.")
        elif head == "/show" and len(words) >= 2 and words[1] == "info":
            data = self.client.show(self.model)
            print("\n".join(show_lines(data)))
        else:
            print(f"Unknown command '{head}'. Type /? for help")
        return True

    def set_parameter(self, name: str, text: str) -> None:
        from ollamactl.runtime.store.options import parse_parameter

        try:
            value = parse_parameter(name, text)
        except OllamactlError as exc:
            print(f"Couldn't set parameter: {exc}")
            return
        if name == "stop":
            self.options.setdefault("stop", []).append(value)
        else:
            self.options[name] = value
        print(f"Set parameter '{name}' to '{text}'")


def _setup_history() -> None:
    try:
        import readline
    except ImportError:
        return
    if os.environ.get("OLLAMA_NOHISTORY", "").strip().lower() in ("1", "true", "t"):
        return
    path = Path.home() / ".ollama" / "history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        return
    import atexit

    atexit.register(_save_history, readline, path)


def _save_history(readline: Any, path: Path) -> None:
    try:
        readline.write_history_file(path)
    except OSError:
        return
