"""ollamactl: install, configure, diagnose and run a local Ollama-compatible LLM service."""

__version__ = "0.1.0"
