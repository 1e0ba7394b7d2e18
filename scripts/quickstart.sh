#!/usr/bin/env bash
# Set everything up and run the main job: what exists of install -> start -> answer a prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OLLAMACTL=.venv/bin/ollamactl
echo ">>> ollamactl --version"
$OLLAMACTL --version
echo ">>> ollamactl env list"
$OLLAMACTL env list
