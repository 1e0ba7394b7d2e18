"""The texts that mark a tool call in a model's output (Hermes/Qwen, Llama 3.1, Mistral).

Shared by the parser of calls (:mod:`tools`) and the grammar that constrains a call once one of
them starts (:mod:`grammar`); a leaf, so that the runner can import the grammar checks alone.
"""

from __future__ import annotations

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_TAG = "[TOOL_CALLS]"
FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
MARKERS = (TOOL_CALL_OPEN, PYTHON_TAG, MISTRAL_TAG, FUNCTION_OPEN)
