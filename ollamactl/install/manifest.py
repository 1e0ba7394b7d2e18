"""The install manifest: what install created, and what was there before it.

Uninstall reverses exactly what is listed under ``created`` and never touches anything else,
so it cannot guess wrong (Ollama's own docs remove ``$(which ollama | tr 'bin' 'lib')``).
Re-running install merges into the existing manifest: what the first install created stays
"created", what existed before it stays "existed".

Where the file lives is each platform's business (its layout's ``manifest_path``); this module
only reads and writes the file it is given.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ollamactl.errors import OllamactlError

FORMAT = 1


@dataclass
class Manifest:
    """One install, as recorded on disk (paths are target paths, without ``--root``)."""

    #: systemd | staged | watchdog | launchd-agent | launchd-daemon | windows-task |
    #: windows-service: the platform unit that owns this install (its ``backends``)
    backend: str = ""
    user: str = ""
    group: str = ""
    exec_argv: list[str] = field(default_factory=list)
    models_dir: str = ""
    runtime_dir: str = ""                               # "" = the existing environment is used
    created_users: list[str] = field(default_factory=list)
    created_groups: list[str] = field(default_factory=list)
    created_memberships: list[list[str]] = field(default_factory=list)  # [user, group]
    created_paths: list[str] = field(default_factory=list)   # in creation order
    existed_paths: list[str] = field(default_factory=list)
    replaced_files: dict[str, str] = field(default_factory=dict)  # path -> backup copy
    enabled: bool = False
    format: int = FORMAT

    # -- recording ---------------------------------------------------------------------------
    def created_path(self, path: str) -> None:
        if path not in self.created_paths and path not in self.existed_paths:
            self.created_paths.append(path)

    def existed_path(self, path: str) -> None:
        if path not in self.created_paths and path not in self.existed_paths:
            self.existed_paths.append(path)

    def created_user(self, name: str) -> None:
        if name not in self.created_users:
            self.created_users.append(name)

    def created_group(self, name: str) -> None:
        if name not in self.created_groups:
            self.created_groups.append(name)

    def created_membership(self, user: str, group: str) -> None:
        if [user, group] not in self.created_memberships:
            self.created_memberships.append([user, group])

    def owns(self, path: str) -> bool:
        return path in self.created_paths

    # -- storage ----------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def load(path: Path, *, shown: str | None = None) -> Manifest | None:
    """The manifest at ``path`` (named ``shown`` in messages), or None when nothing is
    installed.

    Raises:
        OllamactlError: the file is there but damaged.
    """
    try:
        return Manifest.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise OllamactlError(f"the install manifest {shown or path} is damaged: {exc}",
                             hint="fix or remove it; uninstall needs it to know what to "
                                  "remove") from exc
