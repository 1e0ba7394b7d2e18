"""What a model's template can express: tools, fill-in-the-middle, thinking (and its tags).

Ollama decides a model's ``tools``, ``insert`` and ``thinking`` capabilities from its template,
and a request that needs one the template lacks gets a 400 rather than a prompt the template
cannot write. The template is the one a render uses (:mod:`render`): the Modelfile TEMPLATE
when it is Go and parses, else the GGUF's ``tokenizer.chat_template``.

- Go templates, as Ollama reads them: ``tools`` when the template reads ``.Tools``, ``insert``
  when it reads ``.Suffix`` (the names of ``Template.Vars``), ``thinking`` when
  ``thinking.InferTags`` finds the tags around a message's ``.Thinking``. (A GGUF that names
  fill-in-the-middle tokens has ``insert`` whatever its template: ``models.capabilities_of``.)
- Jinja templates, by Ollama's substring rules for GGUF chat templates: ``tools`` when the
  text names ``tools`` or ``tool_call``; ``thinking`` (tags ``<think>``/``</think>``) when it
  writes both tags, or splits earlier answers at ``</think>`` as Qwen's and DeepSeek's do.

The built-in fallbacks (Gemma 3's turn format, ``{{ .Prompt }}``) express none of them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ollamactl.runtime.prompting import gotemplate

THINK_TAGS = ("<think>", "</think>")
_SPLITS_AT_THINK_END = ("content.split('</think>')", 'content.split("</think>")')


@dataclass(frozen=True)
class TemplateFeatures:
    """What the effective template can write; ``thinking_tags`` is None without thinking."""

    tools: bool = False
    insert: bool = False
    thinking_tags: tuple[str, str] | None = None


def _jinja_features(source: str) -> TemplateFeatures:
    thinks = ("<think>" in source and "</think>" in source) or (
        any(split in source for split in _SPLITS_AT_THINK_END)
        and "reasoning_content" not in source)
    return TemplateFeatures(tools="tools" in source or "tool_call" in source,
                            thinking_tags=THINK_TAGS if thinks else None)


@functools.lru_cache(maxsize=64)
def template_features(template: str | None, chat_template: str | None) -> TemplateFeatures:
    """The features of a model whose TEMPLATE layer is ``template`` and whose GGUF carries
    ``chat_template``; cached, as the store's models keep the same strings."""
    if template and "{%" not in template:
        try:
            parsed = gotemplate.parse(template)
        except gotemplate.TemplateSyntaxError:
            parsed = None  # the render falls back to the GGUF chat template, so do we
        if parsed is not None:
            names = parsed.identifiers()
            opening, closing = parsed.thinking_tags()
            return TemplateFeatures(tools="tools" in names, insert="suffix" in names,
                                    thinking_tags=(opening, closing)
                                    if opening and closing else None)
    elif template:
        return _jinja_features(template)
    return _jinja_features(chat_template) if chat_template else TemplateFeatures()
