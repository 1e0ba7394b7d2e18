"""From a request to the text a model reads, and back: prompts rendered through the model's
template (:mod:`prompt` in the server, :mod:`render` in a :mod:`template_worker` process, Go
templates by :mod:`gotemplate`), tool calls offered and parsed (:mod:`tools`,
:mod:`tool_markers`), and the grammars that constrain decoding (:mod:`grammar`).

May import ``store`` (its types, for annotations) and :mod:`ollamactl.runtime.ipc`. The runner
imports :mod:`grammar` (which imports only :mod:`tool_markers`) to check a grammar again.
"""
