"""``ollamactl run MODEL [PROMPT]``: Ollama's ``run``, with its flags (``--verbose``,
``--format``, ``--keepalive``, ``--think``, ``--hidethinking``, ``--nowordwrap``,
``--insecure``).

Like Ollama: piped stdin goes before the prompt; a prompt or piped input answers once through
``/api/generate`` (``run MODEL ""`` only loads the model); otherwise the model is loaded and
the REPL (:mod:`ollamactl.cli.repl`) starts. Unlike Ollama, a REPL whose output is piped still
runs (scripts drive it so), with neither colour nor word wrap.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from typer.core import TyperCommand

from ollamactl.cli.chat import Session, generate, infer_think, load, show_or_pull
from ollamactl.cli.display import AnswerWriter
from ollamactl.cli.models import make_client
from ollamactl.cli.repl import PROMPT, History, Repl
from ollamactl.errors import UsageError
from ollamactl.settings import Invalid, parse_go_duration

THINK_LEVELS = ("high", "medium", "low", "max")


def think_value(text: str) -> bool | str:
    """``--think``'s value: ``true``/``false`` or a level.

    Raises:
        UsageError: anything else.
    """
    if text in ("", "true"):
        return True
    if text == "false":
        return False
    if text in THINK_LEVELS:
        return text
    raise UsageError(f"invalid value for --think: {json.dumps(text)} (must be true, false, "
                     "high, medium, low, or max)")


def keep_alive_value(text: str) -> str | int:
    """``--keepalive``'s Go duration as the request carries it (``-1`` when negative).

    Raises:
        UsageError: not a Go duration (``5m``, ``1h30m``, ``0``).
    """
    try:
        seconds = parse_go_duration(text)
    except Invalid:
        raise UsageError(f"time: invalid duration {json.dumps(text)}",
                         hint="use a Go duration such as 30s, 5m, 1h30m; 0 unloads at once, "
                              "a negative one keeps the model loaded") from None
    return -1 if seconds < 0 else text.strip()


def format_value(text: str) -> Any:
    """``--format``: ``json``, or a JSON schema.

    Raises:
        UsageError: neither.
    """
    if not text or text == "json":
        return text or None
    try:
        return json.loads(text)
    except ValueError:
        raise UsageError(f"invalid --format {text!r}: use json or a JSON schema") from None


class RunCommand(TyperCommand):
    """``run``'s parser with pflag's rule for ``--think``: a value only after ``=``
    (``--think=high``), so ``run MODEL --think "prompt"`` keeps its prompt."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context
        end = args.index("--") if "--" in args else len(args)
        args = [("--think=true" if arg == "--think" and i < end else arg)
                for i, arg in enumerate(args)]
        return super().parse_args(ctx, args)


def run(model: str = typer.Argument(..., help="Model to run."),
        prompt: list[str] | None = typer.Argument(None, help="Prompt; \"\" only loads."),
        verbose: bool = typer.Option(False, "--verbose", help="Show timings for response."),
        format: str = typer.Option("", "--format", help="Response format (e.g. json)."),
        keepalive: str = typer.Option("", "--keepalive",
                                      help="Duration to keep a model loaded (e.g. 5m)."),
        think: str | None = typer.Option(
            None, "--think", metavar="[=true|false|high|medium|low]", show_default=False,
            help="Enable thinking mode: true/false or high/medium/low for supported models."),
        hidethinking: bool = typer.Option(False, "--hidethinking",
                                          help="Hide thinking output (if provided)."),
        nowordwrap: bool = typer.Option(False, "--nowordwrap",
                                        help="Don't wrap words to the next line automatically."),
        insecure: bool = typer.Option(False, "--insecure", help="Use an insecure registry."),
        ) -> None:
    """Run a model: one prompt, or an interactive chat."""
    session = Session(model=model, format=format_value(format), verbose=verbose,
                      hide_thinking=hidethinking, wordwrap=not nowordwrap,
                      keep_alive=keep_alive_value(keepalive) if keepalive else None,
                      think=None if think is None else think_value(think))
    prompts = list(prompt or [])
    interactive = not prompts  # Ollama also wants stdout on a terminal; scripts pipe it
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped:
            prompts.insert(0, piped)
        interactive = False
    client = make_client()
    info = show_or_pull(client, model, insecure=insecure)
    session.think = infer_think(list(info.get("capabilities") or []), session,
                                explicit=think is not None)
    session.apply_show(info)
    if not interactive:
        generate(client, session, " ".join(prompts))
        return
    load(client, session)
    replay(session.loaded_messages, session)
    Repl(client, session, explicit_think=think is not None, history=History.for_user()).loop()


def replay(messages: list[dict[str, Any]], session: Session) -> None:
    """Show a saved session's messages before the prompt, as Ollama does."""
    for message in messages:
        if message.get("role") == "user":
            print(f"{PROMPT}{message.get('content', '')}")
        elif message.get("role") == "assistant":
            writer = AnswerWriter(sys.stdout, wrap=session.wordwrap and sys.stdout.isatty(),
                                  hide_thinking=True, color=False)
            writer.feed("", str(message.get("content", "")))
            print("\n")
