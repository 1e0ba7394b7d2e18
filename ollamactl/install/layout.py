"""Where an install puts things on Linux (paths on the target system, before ``--root``)."""

from __future__ import annotations

from ollamactl.settings import SERVICE_HOME

SERVICE_USER = "ollama"
SERVICE_GROUP = "ollama"
SERVICE_SHELL = "/bin/false"
HOME = SERVICE_HOME                          # /usr/share/ollama, as the seed's useradd -d
MODELS_DIR = f"{HOME}/.ollama/models"
RUNTIME_DIR = "/opt/ollamactl"               # a self-contained runtime, when one is needed
STATE_DIR = "/var/lib/ollamactl"
MANIFEST_PATH = f"{STATE_DIR}/install-manifest.json"
BACKUP_DIR = f"{STATE_DIR}/backup"           # files install replaced with --force
WATCHDOG_STATE_DIR = f"{STATE_DIR}/watchdog"
WATCHDOG_LOG = "/var/log/ollamactl/ollama.log"
WATCHDOG_ENV = "/etc/ollamactl/ollama.env"
#: Where a real Ollama puts its binary (install.sh: the first of these on PATH).
OLLAMA_BINARIES = ("/usr/local/bin/ollama", "/usr/bin/ollama", "/bin/ollama")
#: GPU groups the service user joins where they exist (install.sh).
GPU_GROUPS = ("render", "video")
