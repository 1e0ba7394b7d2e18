"""The one exception hierarchy of ollamactl; stdlib only so that any module may import it.

Expected failures are subclasses of :class:`OllamactlError`. The CLI catches them once, prints one
line (plus a ``hint:`` line) and exits with :attr:`OllamactlError.exit_code`. Anything else is a
bug and keeps its traceback.

    OllamactlError            exit 1   base; .hint says what to do next
    ├── UsageError            exit 2   bad argument or value (as click does)
    │   ├── SettingError      exit 2   a setting's value failed validation
    │   ├── UnknownSetting    exit 2   a name that is not a known setting ("did you mean")
    │   └── NotAvailableYet   exit 2   a command that this build does not provide yet
    ├── PrivilegeError        exit 1   needs root / Administrator
    ├── CommandFailed         exit 1   an external command exited non-zero
    ├── ServiceError          exit 1   the service manager refused or the service failed
    ├── GpuError              exit 1   GPU library or driver failure
    ├── ServerUnreachable     exit 1   no server answers at OLLAMA_HOST
    ├── ApiRequestFailed      exit 1   the server answered with an error status
    │   └── Unauthorized      exit 1   401: the server or a front before it wants a token
    ├── ModelError            exit 1   model store / model file problem
    │   └── ModelMissing      exit 1   the server does not have the model (404)
    └── UnsupportedPlatform   exit 1   this OS / init system is not supported for the action

Exit codes: 0 success, 1 error, 2 usage, 3 ``doctor`` found a failing check, 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
EXIT_INTERRUPTED = 130


class OllamactlError(Exception):
    """Base of every expected failure: a message for the user and an optional hint."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, hint={self.hint!r})"


class UsageError(OllamactlError):
    """The user asked for something malformed."""

    exit_code = EXIT_USAGE


class SettingError(UsageError):
    """A setting's value does not parse; names the setting, the value and the accepted forms."""

    def __init__(self, name: str, value: str, reason: str, accepted: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        self.accepted = accepted
        super().__init__(
            f"invalid value {value!r} for {name}: {reason}", hint=f"{name} accepts {accepted}"
        )


class UnknownSetting(UsageError):
    """A name that is not in the settings registry."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = (
            f"did you mean {' or '.join(self.suggestions)}?"
            if self.suggestions
            else "run `ollamactl env list` to see the known settings"
        )
        super().__init__(f"unknown setting {name!r}", hint=hint)


class NotAvailableYet(UsageError):
    """A command that exists in the CLI's shape but is not provided by this build."""

    def __init__(self, command: str) -> None:
        super().__init__(
            f"`ollamactl {command}` is not available in this version yet",
            hint="see README.md for what each release provides",
        )


class PrivilegeError(OllamactlError):
    """The action needs root (Linux/macOS) or Administrator (Windows)."""


class CommandFailed(OllamactlError):
    """An external command exited non-zero; keeps argv, the exit status and the stderr tail."""

    def __init__(
        self, argv: Sequence[str], returncode: int, stderr: str = "", *, hint: str | None = None
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-5:])
        detail = f": {self.stderr_tail.splitlines()[-1]}" if self.stderr_tail else ""
        super().__init__(
            f"`{' '.join(self.argv)}` exited with status {returncode}{detail}", hint=hint
        )


class ServiceError(OllamactlError):
    """The service manager refused an action, or the service did not come up."""


class GpuError(OllamactlError):
    """A GPU library or driver failure (NVML missing, driver not loaded, mismatch)."""


class ServerUnreachable(OllamactlError):
    """No server answered at the address the client tried."""

    def __init__(self, url: str, reason: str = "connection refused") -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"could not connect to ollama server at {url} ({reason})",
            hint="start it with `ollamactl serve` (foreground) or `ollamactl start` "
            "(background), or set OLLAMA_HOST to where it runs",
        )


class ApiRequestFailed(OllamactlError):
    """The server answered with an error status; keeps the status and the server's message."""

    def __init__(self, status: int, message: str, *, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


class Unauthorized(ApiRequestFailed):
    """401: the server, or a front before it (nginx with a token), refused the credentials."""

    def __init__(self, url: str, message: str = "unauthorized") -> None:
        self.url = url
        super().__init__(401, f"{url} wants credentials ({message})",
                         hint="a front before the server wants a bearer token "
                         "(`ollamactl fleet status --token` sends one)")


class ModelError(OllamactlError):
    """A model name, manifest, blob or model file is missing or invalid."""


class ModelMissing(ModelError):
    """The server does not have the model (404 "... not found")."""


class UnsupportedPlatform(OllamactlError):
    """The action is not supported on this OS or init system."""


def report(exc: OllamactlError) -> int:
    """Print an expected failure as every entry point shows it (``ollamactl: error: ...``, then
    its hint) on stderr; return its exit code."""
    print(f"ollamactl: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code
