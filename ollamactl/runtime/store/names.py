"""Model names in Ollama's grammar: ``[host/][namespace/]model[:tag]`` with the library defaults.

A name turns into a manifest path (``manifests/<host>/<namespace>/<model>/<tag>``), so every part is
checked against Ollama's character rules before it gets near the filesystem: no ``..``, no path
separators, no NUL, bounded lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

from ollamactl.errors import ModelError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

MAX_HOST_LENGTH = 350
MAX_PART_LENGTH = 80
# A whole name can never be longer than its four parts plus separators.
MAX_NAME_LENGTH = MAX_HOST_LENGTH + 3 * MAX_PART_LENGTH + 16


class InvalidModelName(ModelError):
    """A name that does not follow ``[host/][namespace/]model[:tag]``; keeps the offending text."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            "invalid model name",
            hint="names look like `model`, `model:tag`, `namespace/model:tag` or "
            "`host/namespace/model:tag` (letters, digits, `_`, `-`, `.`)",
        )


def _is_alnum_or_underscore(char: str) -> bool:
    return char == "_" or ("a" <= char <= "z") or ("A" <= char <= "Z") or ("0" <= char <= "9")


def _is_valid_part(kind: str, part: str) -> bool:
    """Ollama's ``isValidPart``: first char alnum/_; then alnum _ -; ``.`` except in namespaces;
    ``:`` only in hosts (for a port)."""
    max_length = MAX_HOST_LENGTH if kind == "host" else MAX_PART_LENGTH
    if not part or len(part) > max_length:
        return False
    if not _is_alnum_or_underscore(part[0]):
        return False
    for char in part[1:]:
        if char in "_-":
            continue
        if char == ".":
            if kind == "namespace":
                return False
            continue
        if char == ":":
            if kind != "host":
                return False
            continue
        if not _is_alnum_or_underscore(char):
            return False
    return True


def _cut_last(text: str, sep: str) -> tuple[str, str | None]:
    """Split at the last ``sep``; the right side is None when ``sep`` is absent."""
    index = text.rfind(sep)
    if index < 0:
        return text, None
    return text[:index], text[index + len(sep):]


@dataclass(frozen=True, order=True)
class ModelName:
    """A fully qualified model name; build it with :meth:`parse`."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse ``text`` the way Ollama's ``ParseName`` does and fill in the defaults.

        Raises:
            InvalidModelName: empty parts, bad characters (``/`` misuse, ``..``, NUL), too long.
        """
        if not isinstance(text, str) or not text or len(text) > MAX_NAME_LENGTH:
            raise InvalidModelName(str(text)[:MAX_NAME_LENGTH])
        rest = text
        tag = DEFAULT_TAG
        # "/" is not a tag character, so a ":" before the last "/" belongs to a host:port.
        if rest.rfind(":") > rest.rfind("/"):
            rest, cut = _cut_last(rest, ":")
            tag = cut if cut else "!"
        host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
        rest, cut = _cut_last(rest, "/")
        if cut is None:
            model = rest
        else:
            model = cut or "!"
            rest, cut = _cut_last(rest, "/")
            if cut is None:
                namespace = rest
            else:
                namespace = cut or "!"
                scheme_host = rest.split("://", 1)
                host = scheme_host[-1]
                if len(scheme_host) == 2 and scheme_host[0] not in ("http", "https"):
                    raise InvalidModelName(text)
        name = cls(host=host, namespace=namespace, model=model, tag=tag)
        if not name.is_valid():
            raise InvalidModelName(text)
        return name

    def is_valid(self) -> bool:
        """Every part follows its character and length rules (the host's ``..`` included)."""
        return (
            _is_valid_part("host", self.host)
            and _is_valid_part("namespace", self.namespace)
            and _is_valid_part("model", self.model)
            and _is_valid_part("tag", self.tag)
            and ".." not in self.host
            and ".." not in self.model
            and ".." not in self.tag
        )

    @property
    def display(self) -> str:
        """The shortest form Ollama prints: ``smollm2:135m``, ``user/m:tag``, ``host/ns/m:tag``."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def manifest_parts(self) -> tuple[str, str, str, str]:
        """``(host, namespace, model, tag)``: the path of the manifest below ``manifests/``."""
        return (self.host, self.namespace, self.model, self.tag)

    def casefold_key(self) -> tuple[str, str, str, str]:
        """The key for Ollama's case-insensitive lookup."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def __str__(self) -> str:
        return self.display
