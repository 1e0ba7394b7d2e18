"""Prompts for the server: the Modelfile's SYSTEM and MESSAGEs put around a request's messages,
rendered into special-token-safe segments by a template worker process.

A template is code from whoever made the model or sent the request, so :func:`render_chat` and
:func:`render_generate` never run it here: :mod:`template_worker` does, with the budgets of
:mod:`render` and a memory cap; a render past one is a :class:`~render.TemplateError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ollamactl.runtime.prompting import template_worker
from ollamactl.runtime.prompting.capabilities import template_features
from ollamactl.runtime.prompting.render import Prompt, TemplateError, TemplateSource
from ollamactl.runtime.store import gguf

if TYPE_CHECKING:
    from ollamactl.runtime.store.models import LocalModel

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.prompt")


def _with_model_messages(model: LocalModel, messages: list[dict[str, Any]],
                         system: str | None) -> list[dict[str, Any]]:
    combined = [dict(m) for m in model.messages] + list(messages)
    if system and not (combined and str(combined[0].get("role", "")).lower() == "system"):
        combined.insert(0, {"role": "system", "content": system})
    return combined


def _render_in_worker(model: LocalModel, messages: list[dict[str, Any]], *,
                      tools: list[dict[str, Any]] | None, template_override: str | None,
                      think: Mapping[str, Any] | None,
                      fill: Mapping[str, str] | None = None) -> Prompt:
    reply = template_worker.render({
        "source": asdict(TemplateSource.of(model)), "messages": messages, "tools": tools,
        "template": template_override, "think": dict(think) if think else None,
        "fill": dict(fill) if fill else None})
    for warning in reply.get("warnings", ()):
        log.warning("%s", warning)
    return Prompt(tuple((str(text), bool(special)) for text, special in reply["segments"]))


def render_chat(model: LocalModel, messages: list[dict[str, Any]], *,
                tools: list[dict[str, Any]] | None = None, system_override: str | None = None,
                template_override: str | None = None,
                think: Mapping[str, Any] | None = None) -> Prompt:
    """Render a chat for ``model``: Modelfile MESSAGEs first, then ``messages``; the Modelfile
    SYSTEM (or ``system_override``) goes first unless the first message is a system one.
    ``think`` holds the template's ``Think``, ``ThinkLevel`` and ``IsThinkSet``.

    Raises:
        TemplateError: the template does not parse, fails, tries to escape the sandbox, or
            passes its time, step, output or memory budget.
    """
    system = system_override if system_override is not None else model.system
    combined = _with_model_messages(model, messages, system)
    return _render_in_worker(model, combined, tools=tools, template_override=template_override,
                             think=think)


def render_fill(model: LocalModel, prompt: str, suffix: str, *,
                template_override: str | None = None,
                think: Mapping[str, Any] | None = None) -> Prompt:
    """A fill-in-the-middle prompt, as Ollama renders ``suffix``: the template run once with
    ``.Prompt`` and ``.Suffix`` (no system prompt, no messages); where the model's template
    has no ``.Suffix``, llama.cpp's infill prompt from the GGUF's FIM tokens,
    ``<PRE>prompt<SUF>suffix<MID>``. The caller has checked the model's ``insert``.

    Raises:
        TemplateError: see :func:`render_chat`; or the model can do neither.
    """
    if template_override is None and not template_features(model.template,
                                                           model.chat_template).insert:
        fim = gguf.read_metadata(model.model_path).fim_tokens
        if fim is None:
            raise TemplateError(f"{model.name.display} does not support insert")
        pre, suf, mid = fim
        return Prompt(tuple((text, special) for text, special in (
            (pre, True), (prompt, False), (suf, True), (suffix, False), (mid, True)) if text))
    return _render_in_worker(model, [], tools=None, template_override=template_override,
                             think=think, fill={"prompt": prompt, "suffix": suffix})


def render_generate(model: LocalModel, prompt: str, *, system: str | None = None,
                    template: str | None = None, raw: bool = False,
                    include_model_messages: bool = True,
                    think: Mapping[str, Any] | None = None, suffix: str = "") -> Prompt:
    """Render /api/generate's ``prompt``: in ``raw`` mode as-is (special tokens parsed, as the
    caller wrote the whole template); with a ``suffix``, as the text to fill in before it
    (:func:`render_fill`); otherwise as one user turn after the system prompt (``system`` or
    the Modelfile SYSTEM) and, unless a ``context`` was given (``include_model_messages=False``),
    the Modelfile MESSAGEs.

    Raises:
        TemplateError: see :func:`render_chat`.
    """
    if raw:
        return Prompt(((prompt, True),) if prompt else ())
    if suffix:
        return render_fill(model, prompt, suffix, template_override=template, think=think)
    effective_system = system if system is not None else model.system
    messages: list[dict[str, Any]] = []
    if effective_system:
        messages.append({"role": "system", "content": effective_system})
    if include_model_messages:
        messages.extend(dict(m) for m in model.messages)
    messages.append({"role": "user", "content": prompt})
    return _render_in_worker(model, messages, tools=None, template_override=template,
                             think=think)
