#!/usr/bin/env bash
# Set everything up and run the main job: install (and start) the service, answer a prompt.
# Re-running it is an update: stop -> replace what changed -> start -> confirm /api/version.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OLLAMACTL=.venv/bin/ollamactl
echo ">>> ollamactl --version"
$OLLAMACTL --version
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
echo ">>> ollamactl install --yes   (systemd where it runs, ollamactl's watchdog otherwise)"
$SUDO $OLLAMACTL install --yes
echo ">>> ollamactl status"
$OLLAMACTL status
echo ">>> ollamactl run smollm2:135m \"Why is the sky blue?\""
$OLLAMACTL run smollm2:135m "Why is the sky blue?"
