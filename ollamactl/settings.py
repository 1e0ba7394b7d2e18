"""The registry of every setting the server and the toolkit know: type, parser, default, doc.

Each :class:`Setting` has a strict parser used when a user *sets* a value (``ollamactl env
set``): garbage is refused with a message naming the setting, the value and the accepted forms.
Before any parser, :func:`check_storable` holds every value to the one rule for what a file that
stores settings may receive (no control characters, no line or paragraph separators).
The server reads its environment leniently (:func:`load_server_config`), as Ollama does, but
logs a warning for every value it had to fall back on.

Parsers follow Ollama's ``envconfig`` where Ollama is sane (OLLAMA_HOST forms, Go durations,
bare numbers as seconds) and refuse what Ollama silently misreads (a boolean ``yes-please`` is
*true* to Ollama; here it is an error).
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from ollamactl.errors import SettingError, UnknownSetting, UsageError
from ollamactl.host import HostFacts
from ollamactl.identity import SERVICE_HOME

log = logging.getLogger(__name__)

DEFAULT_PORT = 11434
FOREVER = math.inf


class Invalid(ValueError):
    """Raised by a parser; the message is the reason, without the setting's name."""


# -- OLLAMA_HOST ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostAddress:
    """A parsed OLLAMA_HOST: where the server binds and where clients connect."""

    scheme: str
    host: str          # "" = all interfaces (":8080"); IPv6 without brackets
    port: int
    path: str = ""

    @property
    def bind_host(self) -> str:
        return self.host or "0.0.0.0"

    @property
    def client_host(self) -> str:
        """Clients cannot connect to the unspecified address: 0.0.0.0 / :: mean loopback."""
        if self.host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    @property
    def hostport(self) -> str:
        return _join_hostport(self.host, self.port)

    @property
    def client_url(self) -> str:
        base = f"{self.scheme}://{_join_hostport(self.client_host, self.port)}"
        return f"{base}/{self.path}" if self.path else base

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def is_all_interfaces(self) -> bool:
        return self.host in ("", "0.0.0.0", "::")

    def __str__(self) -> str:
        return self.hostport


def _join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


def _split_host(value: str) -> tuple[str, str]:
    """(scheme, rest) as Ollama cuts them; bare ``ollama.com`` means https."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return "http", value
    return scheme.lower(), rest


def parse_host(value: str) -> HostAddress:
    """Strict OLLAMA_HOST parser.

    ``0.0.0.0`` -> 0.0.0.0:11434, ``:8080`` -> all interfaces port 8080, ``example.com`` ->
    example.com:11434, ``http://[::1]:1234`` -> [::1]:1234, ``https://host`` -> host:443.
    """
    text = _clean(value)
    if not text:
        raise Invalid("empty address")
    if any(c.isspace() for c in text):
        raise Invalid("contains whitespace")
    scheme, rest = _split_host(text)
    if scheme not in ("http", "https"):
        raise Invalid(f"unsupported scheme {scheme!r}")
    default_port = {"http": 80, "https": 443}[scheme] if "://" in text else DEFAULT_PORT
    hostport, _, path = rest.partition("/")
    if not hostport:
        raise Invalid("no host or port")
    host, port_text = _split_hostport(hostport)
    if port_text is None:
        port = default_port
    else:
        if not port_text.isdigit():
            raise Invalid(f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise Invalid(f"port {port} is out of range 1-65535")
    if host:
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
                raise Invalid(f"{host!r} is neither an IP address nor a host name") from None
    return HostAddress(scheme, host, port, path.strip("/"))


def _split_hostport(hostport: str) -> tuple[str, str | None]:
    """Split ``host:port``; a bare IPv6 address (``::1``) has no port, as in Go's fallback."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise Invalid("unclosed '[' in IPv6 address")
        host, tail = hostport[1:end], hostport[end + 1:]
        if tail and not tail.startswith(":"):
            raise Invalid(f"unexpected {tail!r} after IPv6 address")
        return host, (tail[1:] if tail else None)
    if hostport.count(":") > 1:
        return hostport, None
    host, sep, port = hostport.partition(":")
    return host, (port if sep else None)


def parse_host_lenient(value: str) -> HostAddress:
    """Ollama's own reading (envconfig.Host): a bad port falls back to the default port."""
    try:
        return parse_host(value)
    except Invalid:
        text = _clean(value)
        scheme, rest = _split_host(text)
        if scheme not in ("http", "https"):
            scheme = "http"
        hostport, _, _ = rest.partition("/")
        try:
            host, _ = _split_hostport(hostport)
        except Invalid:
            host = "127.0.0.1"
        return HostAddress(scheme, host or "127.0.0.1", DEFAULT_PORT)


# -- durations ------------------------------------------------------------------------------------

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
             "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"^[-+]?((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(value: str) -> float:
    """Go's time.ParseDuration, in seconds: ``5m``, ``1h30m``, ``-1m``, ``250ms``, ``0``."""
    text = value.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.match(text):
        raise Invalid("not a duration")
    sign = -1.0 if text.startswith("-") else 1.0
    total = sum(float(num) * _GO_UNITS[unit] for num, unit in _GO_PART.findall(text))
    return sign * total


def parse_keep_alive(value: str) -> float:
    """keep_alive as seconds; negative means forever (returned as :data:`FOREVER`).

    Accepts Go durations (``5m``, ``1h30m``, ``-1m``) and bare numbers as seconds (``3600``,
    ``-1``, ``0``), as OLLAMA_KEEP_ALIVE does.
    """
    text = _clean(value)
    if not text:
        raise Invalid("empty duration")
    try:
        seconds = float(text)
    except ValueError:
        seconds = parse_go_duration(text)
    else:
        if not math.isfinite(seconds):
            raise Invalid("not a finite number")
    return FOREVER if seconds < 0 else seconds


def parse_timeout(value: str) -> float:
    """OLLAMA_LOAD_TIMEOUT: Go duration or bare seconds; zero or negative means no timeout."""
    seconds = parse_keep_alive(value)
    return FOREVER if seconds == 0 else seconds


# -- scalar parsers -------------------------------------------------------------------------------

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool set only; Ollama would read anything else as *true*."""
    text = _clean(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Invalid("not a boolean (Ollama would silently read it as true)")


def uint_parser(minimum: int = 0, maximum: int = 2**63 - 1) -> Callable[[str], int]:
    def parse(value: str) -> int:
        text = _clean(value)
        if not re.fullmatch(r"\d+", text):
            raise Invalid("not a whole number")
        number = int(text)
        if not minimum <= number <= maximum:
            raise Invalid(f"out of range {minimum}-{maximum}")
        return number
    return parse


def enum_parser(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = _clean(value)
        if text not in choices:
            raise Invalid("not one of the known values")
        return text
    return parse


def parse_debug(value: str) -> int:
    """OLLAMA_DEBUG: false/0 = INFO, true/1 = DEBUG, 2 = TRACE."""
    text = _clean(value)
    if text in ("0", "1", "2"):
        return int(text)
    return int(parse_bool(text))


def parse_path(value: str) -> str:
    """An absolute path; the service neither expands ``~`` nor resolves relative paths."""
    text = _clean(value)
    if not text:
        raise Invalid("empty path")
    check_storable(text)
    if text.startswith("~"):
        raise Invalid("'~' is not expanded by the service; give the full path")
    if not (text.startswith("/") or PureWindowsPath(text).is_absolute()):
        raise Invalid("not an absolute path")
    return text


_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^\s/]*(/.*)?$")


def parse_origins(value: str) -> tuple[str, ...]:
    """OLLAMA_ORIGINS: comma-separated origins, each with a scheme (``*`` wildcards allowed)."""
    entries = [e.strip() for e in _clean(value).split(",")]
    entries = [e for e in entries if e]
    if not entries:
        raise Invalid("no origins")
    for entry in entries:
        if entry == "*":
            continue
        if "://" not in entry:
            raise Invalid(f"origin {entry!r} has no scheme (write http://{entry})")
        if not _ORIGIN.match(entry):
            raise Invalid(f"origin {entry!r} is malformed")
    return tuple(entries)


_UUID_ID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z/-]+$")


def parse_cuda_devices(value: str) -> tuple[str, ...]:
    """CUDA_VISIBLE_DEVICES: indices, ``GPU-<uuid>``, ``MIG-...``; ``-1`` hides every GPU."""
    items = [i.strip() for i in _clean(value).split(",")]
    if not items or any(not i for i in items):
        raise Invalid("empty entry in the list")
    for item in items:
        if re.fullmatch(r"-?\d+", item) or _UUID_ID.match(item):
            continue
        raise Invalid(f"{item!r} is neither an index nor a GPU-/MIG- UUID")
    return tuple(items)


def parse_amd_devices(value: str) -> tuple[str, ...]:
    """HIP/ROCR_VISIBLE_DEVICES: indices (ROCR also ``GPU-<uuid>``); ``-1`` hides every GPU."""
    items = [i.strip() for i in _clean(value).split(",")]
    if not items or any(not i for i in items):
        raise Invalid("empty entry in the list")
    for item in items:
        if not (re.fullmatch(r"-?\d+", item) or re.fullmatch(r"GPU-[0-9A-Fa-f]+", item)):
            raise Invalid(f"{item!r} is neither an index nor a GPU-<uuid>")
    return tuple(items)


def parse_gfx_override(value: str) -> tuple[int, int, int]:
    """HSA_OVERRIDE_GFX_VERSION ``x.y.z`` (decimal, minor and stepping 0-15): gfx1030 = 10.3.0."""
    text = _clean(value)
    match = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{1,2})", text)
    if not match:
        hint = ""
        gfx = re.fullmatch(r"gfx(\d{1,2})([0-9a-f])([0-9a-f])", text.lower())
        if gfx:
            hint = f" (write {int(gfx[1])}.{int(gfx[2], 16)}.{int(gfx[3], 16)})"
        raise Invalid("not a version x.y.z" + hint)
    major, minor, step = (int(g) for g in match.groups())
    if not 6 <= major <= 15 or minor > 15 or step > 15:
        raise Invalid("major must be 6-15, minor and stepping 0-15")
    return major, minor, step


def parse_proxy(value: str) -> str:
    """A proxy URL: ``http://``, ``https://``, ``socks5://`` or ``socks5h://`` with a host."""
    text = _clean(value)
    match = re.fullmatch(r"(https?|socks5h?)://([^/\s@]+@)?(\[[0-9a-fA-F:.]+\]|[^/:\s@]+)"
                         r"(:(\d+))?/?", text)
    if not match:
        raise Invalid("not a proxy URL with scheme and host")
    if match[5] is not None and not 1 <= int(match[5]) <= 65535:
        raise Invalid("port out of range 1-65535")
    return text


def parse_no_proxy(value: str) -> tuple[str, ...]:
    """NO_PROXY: host names, ``.domain`` suffixes, IPs, CIDRs, ``host:port`` or ``*``."""
    entries = [e.strip() for e in _clean(value).split(",") if e.strip()]
    if not entries:
        raise Invalid("empty list")
    for entry in entries:
        if entry == "*":
            continue
        bare = entry.lstrip(".")
        try:
            ipaddress.ip_network(bare.strip("[]"), strict=False)
            continue
        except ValueError:
            pass
        host, _, port = bare.rpartition(":") if bare.count(":") == 1 else (bare, "", "")
        if port and not port.isdigit():
            raise Invalid(f"{entry!r} has a bad port")
        if not _HOSTNAME.match(host or bare):
            raise Invalid(f"{entry!r} is not a host, domain, IP or CIDR")
    return tuple(entries)


def parse_hostnames(value: str) -> tuple[str, ...]:
    entries = [e.strip() for e in _clean(value).split(",") if e.strip()]
    if not entries or not all(_HOSTNAME.match(e) for e in entries):
        raise Invalid("not a comma-separated list of host names")
    return tuple(entries)


def parse_text(value: str) -> str:
    text = _clean(value)
    if not text:
        raise Invalid("empty")
    check_storable(text)
    return text


def parse_identifier(value: str) -> str:
    text = _clean(value)
    if not re.fullmatch(r"[a-z0-9_]+", text):
        raise Invalid("not a library name")
    return text


def _clean(value: str) -> str:
    """Ollama trims surrounding whitespace and one pair of quotes."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


# -- what a stored value may hold ----------------------------------------------------------------

#: Control characters (C0 with TAB and CR, DEL, C1 with NEL), lone surrogates (not UTF-8), line and
#: paragraph separators: each ends a line for some reader of the files settings are stored in
#: (systemd: CR; str.splitlines and editors: VT, FF, FS-RS, NEL, U+2028, U+2029) or cannot be
#: written there at all.
_UNSTORABLE = {"Cc": "a control character", "Cs": "a lone surrogate, not UTF-8",
               "Zl": "a line separator", "Zp": "a paragraph separator"}
#: What systemd's path lists (ReadWritePaths=, BindPaths=) read as syntax besides whitespace.
_PATH_LIST_SYNTAX = "\"'\\:"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STORABLE = "one line of text without control characters or line separators"


def check_storable(value: str) -> None:
    """The one rule for every persisted value, whatever the file: it holds nothing a reader of
    that file could take for a line end or syntax, so it can never add a line or a directive."""
    for char in value:
        kind = _UNSTORABLE.get(unicodedata.category(char))
        if kind is None and _is_noncharacter(char):
            kind = "a Unicode noncharacter, which XML (plists) cannot hold"
        if kind is not None:
            raise Invalid(f"holds U+{ord(char):04X} ({kind}); a stored value must stay one "
                          "line of plain text")


def _is_noncharacter(char: str) -> bool:
    """U+FDD0-U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF, ...)."""
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def check_path_list_word(value: str) -> None:
    """A path the service's drop-in also grants (ReadWritePaths=, BindPaths=): those lists split
    on whitespace and unquote, so ``/srv/models /`` would grant ``/`` as well."""
    for char in value:
        if char.isspace() or char in _PATH_LIST_SYNTAX:
            raise Invalid(f"holds {char!r}: systemd's ReadWritePaths=/BindPaths= split paths on "
                          "whitespace and read quotes, '\\' and ':' as syntax; pick a path "
                          "without them")


def require_storable(name: str, value: str) -> None:
    """What every settings store checks before it writes ``name=value``.

    Raises:
        SettingError: the value breaks :func:`check_storable`.
        UsageError: the name is not an identifier (``NAME`` is syntax in every store).
    """
    if not _NAME.fullmatch(name):
        raise UsageError(f"cannot store a setting named {name!r}",
                         hint="names are letters, digits and '_', not starting with a digit")
    _require(check_storable, name, value)


def require_path_list_word(name: str, value: str) -> None:
    """:func:`check_path_list_word` for ``name=value``; raises SettingError."""
    _require(check_path_list_word, name, value)


def _require(check: Callable[[str], None], name: str, value: str) -> None:
    try:
        check(value)
    except Invalid as exc:
        accepted = SETTINGS[name].accepted if name in SETTINGS else STORABLE
        raise SettingError(name, value, str(exc), accepted) from None


# -- the registry ---------------------------------------------------------------------------------

DefaultFn = Callable[[HostFacts, bool], str]


@dataclass(frozen=True)
class Setting:
    """One environment variable the server or its GPU libraries read."""

    name: str
    kind: str
    parse: Callable[[str], Any]
    accepted: str
    doc: str
    default: str | DefaultFn = ""
    restart: bool = True
    scope: str = "server"          # server | gpu | proxy | client
    obsolete: bool = False
    lenient_fallback: Callable[[str], Any] | None = field(default=None, compare=False)

    def validate(self, value: str) -> Any:
        """Strict parse for ``env set``, after the rule for stored values; raises
        :class:`SettingError`."""
        _require(check_storable, self.name, value)
        try:
            return self.parse(value)
        except Invalid as exc:
            raise SettingError(self.name, value, str(exc), self.accepted) from None

    def default_for(self, host: HostFacts, *, service: bool = True) -> str:
        """The default as text ("" = unset), for the service's user when ``service``."""
        return self.default(host, service) if callable(self.default) else self.default

    def read_lenient(self, value: str | None, host: HostFacts, *, service: bool = True) -> Any:
        """How the server reads its environment: a bad value is logged and replaced."""
        default = self.default_for(host, service=service)
        if value is None or _clean(value) == "":
            return self.parse(default) if default else None
        try:
            return self.parse(value)
        except Invalid as exc:
            if self.lenient_fallback is not None:
                fallback = self.lenient_fallback(value)
            else:
                fallback = self.parse(default) if default else None
            log.warning("invalid %s=%r (%s); using %r", self.name, value, exc, fallback)
            return fallback


def _models_default(host: HostFacts, service: bool) -> str:
    """Ollama's: under the service account's home where the service has one of its own, else
    under the login user's home."""
    if service and host.service_has_own_account:
        return f"{SERVICE_HOME}/.ollama/models"
    return str(host.user_home() / ".ollama" / "models")


_BOOL = "1, 0, true, false (t/f and TRUE/FALSE too)"
_DURATION = "a duration like 5m, 1h30m, 24h, a number of seconds like 3600, -1 (forever) or 0"
_IDS = "a comma list of indices (0,1), GPU-<uuid> / MIG-<uuid>, or -1 to hide every GPU"


def _s(name: str, kind: str, parse: Callable[[str], Any], accepted: str, doc: str,
       default: str | DefaultFn = "", **kw: Any) -> Setting:
    if parse is parse_bool:
        kw.setdefault("lenient_fallback", _garbage_is_true)
    return Setting(name, kind, parse, accepted, doc, default, **kw)


def _garbage_is_true(value: str) -> bool:
    """Ollama's envconfig.Bool: any non-empty value that does not parse counts as true."""
    return True


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    _s("OLLAMA_HOST", "address", parse_host,
       "host[:port], :port, or http(s)://host[:port] (e.g. 0.0.0.0, :8080, http://[::1]:1234)",
       "Address the server binds and clients connect to.", "127.0.0.1:11434",
       lenient_fallback=parse_host_lenient),
    _s("OLLAMA_ORIGINS", "origins", parse_origins,
       "comma-separated origins with a scheme, e.g. https://app.example.com,chrome-extension://*",
       "Extra browser origins allowed by CORS (added to the built-in local ones)."),
    _s("OLLAMA_MODELS", "path", parse_path, "an absolute directory path",
       "Where models are stored (manifests/ and blobs/).", _models_default),
    _s("OLLAMA_KEEP_ALIVE", "duration", parse_keep_alive, _DURATION,
       "How long a model stays loaded after its last request.", "5m"),
    _s("OLLAMA_LOAD_TIMEOUT", "duration", parse_timeout, _DURATION,
       "How long a model load may stall before it is given up (0 or negative: never).", "5m"),
    _s("OLLAMA_MAX_QUEUE", "integer", uint_parser(1, 1_000_000), "a whole number 1-1000000",
       "Requests that may wait for a model before the server answers 503.", "512"),
    _s("OLLAMA_NUM_PARALLEL", "integer", uint_parser(1, 256), "a whole number 1-256",
       "Requests each loaded model serves at once (context grows num_ctx x parallel).", "1"),
    _s("OLLAMA_MAX_LOADED_MODELS", "integer", uint_parser(0, 1024),
       "a whole number; 0 = 3 per GPU (3 on CPU)",
       "How many models may be loaded at once.", "0"),
    _s("OLLAMA_CONTEXT_LENGTH", "integer", uint_parser(0, 16_777_216),
       "a whole number of tokens (0 = from the GPUs' VRAM: 4096, 32768 or 262144)",
       "Default context window (num_ctx) for requests that do not set one.", "0"),
    _s("OLLAMA_DEBUG", "level", parse_debug, "0/false (info), 1/true (debug), 2 (trace)",
       "Log verbosity of the server.", "0"),
    _s("OLLAMA_FLASH_ATTENTION", "boolean", parse_bool, _BOOL,
       "Force flash attention on (1) or off (0); unset = automatic."),
    _s("OLLAMA_KV_CACHE_TYPE", "enum", enum_parser("f16", "q8_0", "q4_0"), "f16, q8_0 or q4_0",
       "KV cache quantization (q8_0/q4_0 need flash attention).", "f16"),
    _s("OLLAMA_NOPRUNE", "boolean", parse_bool, _BOOL,
       "Do not delete unreferenced blobs at start-up.", "false"),
    _s("OLLAMA_SCHED_SPREAD", "boolean", parse_bool, _BOOL,
       "Always spread a model across all GPUs.", "false"),
    _s("OLLAMA_GPU_OVERHEAD", "bytes", uint_parser(), "a whole number of bytes",
       "VRAM reserved per GPU for other programs.", "0"),
    _s("OLLAMA_LLM_LIBRARY", "name", parse_identifier,
       "a library name such as cpu, cpu_avx2, cpu_avx512, cpu_amx (ollamactl runtime show)",
       "Force the CPU library the runner loads (default: the best one that passed the self-test)."),
    _s("OLLAMA_TMPDIR", "path", parse_path, "an absolute directory path",
       "Temporary directory for the server and its runners (obsolete upstream; honoured here).",
       obsolete=True),
    _s("OLLAMA_IGPU_ENABLE", "boolean", parse_bool, _BOOL,
       "Use integrated GPUs (1) or never (0); unset = vendor default.", scope="gpu"),
    _s("OLLAMA_VULKAN", "boolean", parse_bool, _BOOL, "Vulkan device discovery.", "true",
       scope="gpu"),
    _s("OLLAMA_GO_TEMPLATE", "boolean", parse_bool, _BOOL,
       "Prefer a Modelfile TEMPLATE over the model's own chat template.", "true"),
    _s("OLLAMA_MAX_TRANSFER_STREAMS", "integer", uint_parser(1, 64), "a whole number 1-64",
       "Parallel transfers per pull.", "4"),
    _s("OLLAMA_REMOTES", "hosts", parse_hostnames, "comma-separated host names",
       "Hosts allowed for remote models.", "ollama.com"),
    _s("OLLAMA_NO_CLOUD", "boolean", parse_bool, _BOOL, "Disable cloud models.", "false"),
    _s("OLLAMA_AUTH", "boolean", parse_bool, _BOOL, "Sign client requests.", "false",
       scope="client", restart=False),
    _s("OLLAMA_NOHISTORY", "boolean", parse_bool, _BOOL,
       "Do not keep `ollamactl run` history.", "false", scope="client", restart=False),
    _s("OLLAMA_EDITOR", "text", parse_text, "an editor command",
       "Editor for multi-line input in `run`.", scope="client", restart=False),
    # On by default: /metrics shows the same callers what /api/ps and /api/version show (models,
    # sizes, queue, version) plus counts and timings, never prompts or client addresses; it is
    # on the same listener behind the same guards and the same front's authentication; counters
    # help only if they ran before the incident; and `ollamactl top` reads it. Where it would
    # be open to the network without authentication, doctor's network.metrics-exposure warns
    # (llama-server's --metrics, with no such check, is opt-in).
    _s("OLLAMA_METRICS", "boolean", parse_bool, _BOOL,
       "Serve Prometheus metrics at GET /metrics (same listener and authentication as the API).",
       "true"),
    _s("OLLAMA_DEBUG_LOG_REQUESTS", "boolean", parse_bool, _BOOL,
       "Log request bodies (debug only: prompts end up in logs).", "false"),
    _s("OLLAMA_EXPERIMENT", "text", parse_text, "a comma list of experiment names",
       "Enable experimental features."),
    _s("CUDA_VISIBLE_DEVICES", "devices", parse_cuda_devices, _IDS,
       "NVIDIA GPUs the server may use (UUIDs are stable, indices may reorder).", scope="gpu"),
    _s("HIP_VISIBLE_DEVICES", "devices", parse_amd_devices, "comma list of indices, or -1",
       "AMD GPUs (HIP numbering) the server may use.", scope="gpu"),
    _s("ROCR_VISIBLE_DEVICES", "devices", parse_amd_devices,
       "comma list of indices or GPU-<uuid>, or -1", "AMD GPUs (ROCr runtime) the server may use.",
       scope="gpu"),
    _s("GPU_DEVICE_ORDINAL", "devices", parse_amd_devices, "comma list of indices, or -1",
       "AMD GPUs (OpenCL numbering) the server may use.", scope="gpu"),
    _s("GGML_VK_VISIBLE_DEVICES", "devices", parse_amd_devices, "comma list of indices, or -1",
       "Vulkan devices the server may use.", scope="gpu"),
    _s("HSA_OVERRIDE_GFX_VERSION", "gfx version", parse_gfx_override,
       "x.y.z, e.g. 10.3.0 for gfx1030 or 11.0.0 for gfx1100",
       "Make ROCm treat every AMD GPU as this gfx target.", scope="gpu"),
    _s("JETSON_JETPACK", "enum", enum_parser("5", "6"), "5 or 6",
       "JetPack generation on NVIDIA Jetson.", scope="gpu"),
    _s("LLAMA_ARG_FIT", "enum", enum_parser("on", "off"), "on or off",
       "llama.cpp automatic fitting of layers to memory.", "on"),
    _s("LLAMA_ARG_FIT_TARGET", "integer", uint_parser(), "a whole number of MiB",
       "Memory llama.cpp's fitting leaves free, in MiB."),
    *(
        _s(name, "url", parse_proxy, "http(s)://[user:pass@]host[:port] or socks5://host:port",
           doc, scope="proxy")
        for name, doc in (
            ("HTTPS_PROXY", "Proxy for registry pulls (HTTPS)."),
            ("https_proxy", "Lower-case alias of HTTPS_PROXY."),
            ("HTTP_PROXY", "Proxy for plain-HTTP requests (Ollama advises against setting it)."),
            ("http_proxy", "Lower-case alias of HTTP_PROXY."),
        )
    ),
    *(
        _s(name, "hosts", parse_no_proxy, "comma list of hosts, .domains, IPs or CIDRs",
           doc, scope="proxy")
        for name, doc in (
            ("NO_PROXY", "Hosts reached without the proxy; include localhost and 127.0.0.1."),
            ("no_proxy", "Lower-case alias of NO_PROXY."),
        )
    ),
]}


def host_from(environ: Mapping[str, str]) -> HostAddress:
    """OLLAMA_HOST as the server and its clients read it from ``environ``: the default when unset
    or blank, Ollama's own fallback (:func:`parse_host_lenient`) when malformed."""
    value = environ.get("OLLAMA_HOST", "")
    return parse_host_lenient(value) if _clean(value) else parse_host(
        str(SETTINGS["OLLAMA_HOST"].default))


def lookup(name: str) -> Setting:
    """The setting called ``name``; :class:`UnknownSetting` with suggestions otherwise."""
    if name in SETTINGS:
        return SETTINGS[name]
    by_upper = {k.upper(): k for k in SETTINGS}
    candidates = difflib.get_close_matches(name.upper(), list(by_upper), n=3, cutoff=0.8)
    raise UnknownSetting(name, [by_upper[c] for c in candidates])


# -- the server's view ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerConfig:
    """Typed settings as the server reads them at start-up (leniently, with warnings)."""

    host: HostAddress
    origins: tuple[str, ...]
    models: Path
    keep_alive_s: float
    load_timeout_s: float
    max_queue: int
    num_parallel: int
    max_loaded_models: int       # 0 = 3 x GPUs (3 on CPU)
    context_length: int
    debug: int
    flash_attention: bool | None
    kv_cache_type: str
    noprune: bool
    sched_spread: bool
    gpu_overhead_bytes: int
    tmpdir: str | None
    environment: Mapping[str, str]  # every known setting that was set, for the start-up log
    metrics: bool = True            # OLLAMA_METRICS: serve GET /metrics


def load_server_config(environ: Mapping[str, str], host: HostFacts, *,
                       service: bool = False) -> ServerConfig:
    """Read the server's settings from ``environ`` the lenient way Ollama does."""

    def read(name: str) -> Any:
        return SETTINGS[name].read_lenient(environ.get(name), host, service=service)

    context_length = read("OLLAMA_CONTEXT_LENGTH") or 0   # 0: the VRAM tier, at first use
    return ServerConfig(
        host=read("OLLAMA_HOST"),
        origins=read("OLLAMA_ORIGINS") or (),
        models=Path(read("OLLAMA_MODELS")),
        keep_alive_s=read("OLLAMA_KEEP_ALIVE"),
        load_timeout_s=read("OLLAMA_LOAD_TIMEOUT"),
        max_queue=read("OLLAMA_MAX_QUEUE"),
        num_parallel=read("OLLAMA_NUM_PARALLEL"),
        max_loaded_models=read("OLLAMA_MAX_LOADED_MODELS"),
        context_length=context_length,
        debug=read("OLLAMA_DEBUG"),
        flash_attention=read("OLLAMA_FLASH_ATTENTION"),
        kv_cache_type=read("OLLAMA_KV_CACHE_TYPE"),
        noprune=read("OLLAMA_NOPRUNE"),
        sched_spread=read("OLLAMA_SCHED_SPREAD"),
        gpu_overhead_bytes=read("OLLAMA_GPU_OVERHEAD"),
        tmpdir=read("OLLAMA_TMPDIR"),
        environment={k: environ[k] for k in SETTINGS if k in environ},
        metrics=read("OLLAMA_METRICS"),
    )
