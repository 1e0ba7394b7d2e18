"""The conversation behind ``ollamactl run`` and its REPL: the session's state (what Ollama's CLI
calls runOptions) and the requests it makes: find or pull the model, load it, one ``/api/chat``
turn, a one-shot ``/api/generate``, ``/save`` through ``/api/create``.

Separate from the REPL's parsing (:mod:`ollamactl.cli.repl`) so both run and the REPL share one
way to talk to the server.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ollamactl.cli.display import AnswerWriter, Spinner, summary_lines
from ollamactl.errors import ModelMissing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ollamactl.client import Client

Message = dict[str, Any]


@dataclass
class Session:
    """What one ``run`` carries from turn to turn. ``think`` None leaves the choice to the
    server; ``format`` is None, ``"json"`` or a JSON schema."""

    model: str
    parent_model: str = ""
    loaded_messages: list[Message] = field(default_factory=list)  # the model's MESSAGEs
    messages: list[Message] = field(default_factory=list)
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    format: Any = None
    keep_alive: str | int | None = None
    think: bool | str | None = None
    hide_thinking: bool = False
    wordwrap: bool = True
    verbose: bool = False

    def copy(self) -> Session:
        return copy.deepcopy(self)

    def apply_show(self, info: dict[str, Any]) -> None:
        """Take the parent model and the stored messages from ``/api/show``'s answer."""
        self.parent_model = str((info.get("details") or {}).get("parent_model") or "")
        self.loaded_messages = list(info.get("messages") or [])

    def request_fields(self) -> dict[str, Any]:
        """keep_alive and think, when set, for every request of this session."""
        fields: dict[str, Any] = {}
        if self.keep_alive is not None:
            fields["keep_alive"] = self.keep_alive
        if self.think is not None:
            fields["think"] = self.think
        return fields


def show_or_pull(client: Client, model: str, *, insecure: bool = False) -> dict[str, Any]:
    """``/api/show`` of ``model``, pulling it first when the server lacks it (bundled models
    import offline), with pull's progress on stderr."""
    from ollamactl.cli.models import Progress

    try:
        return client.show(model)
    except ModelMissing:
        pass
    progress = Progress()
    for item in client.pull(model, insecure=insecure):
        progress.update(item)
    progress.close()
    return client.show(model)


def infer_think(capabilities: list[str], session: Session, *, explicit: bool
                ) -> bool | str | None:
    """The user's choice when given; else thinking on for a model that can think, unset
    otherwise (as Ollama's inferThinkingOption)."""
    if explicit:
        return session.think
    return True if "thinking" in capabilities else None


def load(client: Client, session: Session) -> None:
    """Load the model (an empty generate, with the session's keep_alive and think), spinning."""
    with Spinner():
        client.generate(session.model, "", **session.request_fields())


def chat(client: Client, session: Session) -> Message | None:
    """One ``/api/chat`` turn over the session's messages, streamed to stdout; the assistant's
    message, or None when Ctrl-C stopped it (nothing is kept then, as in Ollama)."""
    items = client.chat(session.model, session.messages, stream=True, options=session.options,
                        format=session.format, **session.request_fields())
    writer = _writer(session)
    last = _stream(items, writer, lambda item: item.get("message") or {}, "content")
    if last is None:
        return None
    if session.messages:
        sys.stdout.write("\n\n")
    _summary(session, last)
    message: Message = {"role": str((last.get("message") or {}).get("role") or "assistant"),
                        "content": "".join(writer.content)}
    if writer.thinking:
        message["thinking"] = "".join(writer.thinking)
    return message


def generate(client: Client, session: Session, prompt: str) -> None:
    """A one-shot ``/api/generate`` of ``prompt`` streamed to stdout (an empty prompt only
    loads the model)."""
    items = client.generate(session.model, prompt, stream=True, options=session.options,
                            format=session.format, system=session.system or None,
                            **session.request_fields())
    last = _stream(items, _writer(session), lambda item: item, "response")
    if last is None:
        return
    if prompt:
        sys.stdout.write("\n\n")
    if last.get("done"):
        _summary(session, last)


def save(client: Client, session: Session, name: str) -> None:
    """Create ``name`` from this session as Ollama's ``/save`` does: FROM the parent model (or
    this one), with the session's system message, parameters and messages."""
    from ollamactl.runtime.store.names import InvalidModelName, ModelName

    source = session.parent_model
    try:
        ModelName.parse(source)
    except InvalidModelName:
        source = ""
    fields: dict[str, Any] = {}
    if session.system:
        fields["system"] = session.system
    if session.options:
        fields["parameters"] = dict(session.options)
    messages = session.loaded_messages + session.messages
    if messages:
        fields["messages"] = messages
    for _ in client.create(name, from_model=source or session.model, **fields):
        pass


def _writer(session: Session) -> AnswerWriter:
    tty = sys.stdout.isatty()
    return AnswerWriter(sys.stdout, wrap=session.wordwrap and tty,
                        hide_thinking=session.hide_thinking, color=tty)


def _stream(items: Iterator[dict[str, Any]], writer: AnswerWriter,
            part: Callable[[dict[str, Any]], dict[str, Any]], content_key: str
            ) -> dict[str, Any] | None:
    """Feed each piece (``part`` of it holds ``thinking`` and ``content_key``) to ``writer``
    behind a spinner; the last piece, None on Ctrl-C (the request is closed then)."""
    last: dict[str, Any] = {}
    with Spinner() as spinner:
        try:
            for item in items:
                last = item
                piece = part(item)
                content = str(piece.get(content_key) or "")
                if writer.shows(content):
                    spinner.stop()
                writer.feed(str(piece.get("thinking") or ""), content)
        except KeyboardInterrupt:
            close = getattr(items, "close", None)
            if callable(close):
                close()
            sys.stdout.write("\n")
            sys.stdout.flush()
            return None
    return last


def _summary(session: Session, last: dict[str, Any]) -> None:
    if session.verbose:
        lines = summary_lines(last)
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
    sys.stdout.flush()
