#!/usr/bin/env bash
# The whole test suite: set up .venv, then lint (ruff), type-check (mypy) and pytest.
# Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo ">>> ruff"
.venv/bin/ruff check ollamactl tests bench
echo ">>> mypy"
.venv/bin/mypy
echo ">>> pytest"
.venv/bin/python -m pytest "$@"
