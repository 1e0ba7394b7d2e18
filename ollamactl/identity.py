"""The names the service goes by on every OS, in one leaf: the service (systemd unit, Windows
service, the stem of launchd's label), its Linux account and home (install.sh's ``useradd -r -s
/bin/false -U -m -d /usr/share/ollama ollama``) and the GPU groups that account joins."""

from __future__ import annotations

SERVICE_NAME = "ollama"
SERVICE_USER = "ollama"
SERVICE_GROUP = "ollama"
SERVICE_HOME = "/usr/share/ollama"
#: Groups that own the GPU device nodes (/dev/dri, /dev/kfd); the service user joins those that
#: exist, as install.sh does.
GPU_GROUPS = ("render", "video")
