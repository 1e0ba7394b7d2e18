#!/usr/bin/env bash
# The whole test suite: set up .venv, then lint (ruff), type-check (mypy) and pytest.
# Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The lavapipe integration tests run the Vulkan runtime on Mesa's CPU Vulkan device: install
# Mesa's drivers and the Vulkan build tools (as root, with apt) and build it (cached by recipe).
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  vk_pkgs=(mesa-vulkan-drivers libvulkan-dev glslc spirv-headers)
  vk_missing=()
  for pkg in "${vk_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || vk_missing+=("$pkg")
  done
  if ((${#vk_missing[@]})); then
    echo ">>> installing ${vk_missing[*]} (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${vk_missing[@]}" >/dev/null
  fi
  OLLAMACTL_GPU_RUNTIMES=vulkan .venv/bin/python -m ollamactl.runtime.builds.gpu_backends ensure
else
  echo ">>> not root with apt-get: no Vulkan runtime for the lavapipe tests (they skip)"
fi
echo ">>> ruff"
.venv/bin/ruff check ollamactl tests bench
echo ">>> mypy"
.venv/bin/mypy
echo ">>> pytest"
.venv/bin/python -m pytest "$@"
