"""Making the runtime (Python, ollamactl, its dependencies, the bundled models) runnable by the
service user.

The environment that runs this ollamactl is used as it is when the service user can read it and
the hardened unit can see it (``ProtectHome=yes`` hides /home, /root and /run/user). Otherwise a
self-contained runtime is built under ``/opt/ollamactl``: a venv on a system interpreter of the
same Python version, with this environment's packages (hard links where the file system allows,
so the copy is quick and small) and ollamactl itself as plain files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamactl.context import Context
from ollamactl.errors import OllamactlError
from ollamactl.install.manifest import Manifest
from ollamactl.install.users import Account, blocked_parents, can_access
from ollamactl.system import Cmd, PlanStep, cmd

#: Where the self-contained runtime is built, when the service user cannot use this one.
RUNTIME_DIR = "/opt/ollamactl"
_EDITABLE_MARKERS = ("__editable__", "_editable_impl_")
STAMP = f"{RUNTIME_DIR}/built-from.sha256"


@dataclass(frozen=True)
class Runtime:
    """An interpreter that runs ollamactl: ``python -I -m ollamactl serve``.

    ``-I`` keeps out the working directory (``-m`` alone puts it first on ``sys.path``: the
    service user's home, the directory ``sudo`` ran in) and PYTHON* variables; site-packages'
    ``.pth`` files still load, so an editable install keeps working.
    """

    python: str        # the interpreter's path on the target system
    prefix: str        # its environment (sys.prefix)
    built: bool        # True: the self-contained copy under /opt/ollamactl

    def serve_argv(self) -> list[str]:
        return [self.python, "-I", "-m", "ollamactl", "serve"]

    def version_argv(self) -> list[str]:
        return [self.python, "-I", "-m", "ollamactl", "--version"]


def current() -> Runtime:
    return Runtime(sys.executable, sys.prefix, built=False)


def built_runtime() -> Runtime:
    venv = f"{RUNTIME_DIR}/venv"
    return Runtime(f"{venv}/bin/python", venv, built=True)


def why_unusable(runtime: Runtime, account: Account, *, hidden: Callable[[str], bool],
                 staged_root: Path | None = None) -> str:
    """Why ``account`` could not run ``runtime`` under the hardened unit ("" when it can).

    Checks mode bits on the interpreter (resolved), the environment, its site-packages and the
    ollamactl package; ``hidden`` says which paths the service's sandbox hides (home
    directories, for systemd's ProtectHome); ``staged_root`` maps a built runtime's target
    paths to the staging tree.
    """
    def local(path: str) -> Path:
        if staged_root is not None and runtime.built:
            return staged_root / path.lstrip("/")
        return Path(path)

    interpreter = Path(os.path.realpath(local(runtime.python)))
    if staged_root is not None and runtime.built and not interpreter.exists():
        interpreter = Path(os.path.realpath(runtime.python))
    checks = [(interpreter, os.R_OK | os.X_OK)]
    package = Path(__file__).resolve().parent.parent
    if runtime.built:
        site = local(runtime.prefix) / _relative_purelib()
        checks += [(local(runtime.prefix), os.R_OK | os.X_OK), (site, os.R_OK | os.X_OK),
                   (site / "ollamactl", os.R_OK | os.X_OK)]
    else:
        checks += [(Path(runtime.prefix), os.R_OK | os.X_OK),
                   (Path(sysconfig.get_paths()["purelib"]), os.R_OK | os.X_OK),
                   (package, os.R_OK | os.X_OK)]
    for path, want in checks:
        shown = str(path)
        if not runtime.built and hidden(shown):
            return f"{shown} is under a home directory, which the hardened unit hides"
        if not path.exists():
            return f"{shown} does not exist"
        inside_stage = staged_root is not None and staged_root in path.parents
        blocked = blocked_parents(path, account,
                                  stop_at=staged_root if inside_stage and staged_root
                                  else Path("/"))
        if blocked:
            return f"{account.name} cannot enter {blocked[0]}"
        if not can_access(path, account, want=want):
            return f"{account.name} cannot read {shown}"
    return ""


def verify_as_user(ctx: Context, runtime: Runtime, user: str) -> str:
    """Run the version check as ``user`` (``runuser -u ollama -- python -I -m ollamactl
    --version``, from ``/``); return "" when it works, else what went wrong."""
    result = ctx.runner.run(Cmd(("runuser", "-u", user, "--", *runtime.version_argv()),
                                why=f"check that {user} can run ollamactl", mutates=False,
                                check=False, timeout_s=60, cwd="/"))
    if result.ok:
        return ""
    return (result.stderr or result.stdout).strip().splitlines()[-1:][0] \
        if (result.stderr or result.stdout).strip() else f"exit status {result.returncode}"


def self_test(ctx: Context, runtime: Runtime) -> list[str]:
    """Prove the runtime's CPU library on this machine before the service uses it (a decode
    of the bundled model in a subprocess per variant, best first; results kept beside the
    runtime for the server). Returns its lines: a variant that failed, the one that serves.

    ``-I`` (here and below): root runs it, so nothing comes from the caller's directory or
    PYTHON* variables.

    Raises:
        OllamactlError: no CPU library of the runtime decodes correctly here.
    """
    result = ctx.runner.run(cmd(runtime.python, "-I", "-m", "ollamactl.runtime.builds.selftest",
                                why="self-test the CPU runtime on this machine",
                                mutates=False, check=False, timeout_s=900))
    lines = [ln for ln in result.stdout.strip().split("\n") if ln]
    if not result.ok:
        detail = "; ".join(lines[-2:]) or (result.stderr or "").strip().split("\n")[-1]
        raise OllamactlError(f"the runtime in {runtime.prefix} failed its self-test: {detail}",
                             hint="run `ollamactl runtime selftest --force` for details; "
                                  "`bash scripts/setup.sh` rebuilds a portable runtime")
    return lines or ["CPU runtime: self-test passed"]


def service_python(ctx: Context, record: Manifest | None) -> str:
    """The interpreter the service installed as ``record`` runs (its runtime may be /opt's
    copy), else this one: the runtime whose CPU libraries doctor and ``ollamactl runtime``
    judge."""
    if record is not None and record.exec_argv and ctx.path(record.exec_argv[0]).exists():
        return record.exec_argv[0]
    return sys.executable


def runtime_report(ctx: Context, python: str, requested: str) -> dict[str, Any]:
    """What ``python``'s runtime has and which CPU library it would serve with, given
    ``OLLAMA_LLM_LIBRARY=requested`` (asked of that interpreter: it reads its own files).

    Raises:
        OllamactlError: the interpreter could not answer.
    """
    result = ctx.runner.run(cmd(python, "-I", "-m", "ollamactl.runtime.builds.serving",
                                "--library", requested, why="describe the runtime",
                                mutates=False, check=False, timeout_s=60))
    try:
        data = json.loads(result.stdout)
    except ValueError:
        detail = (result.stderr or result.stdout or "no output").strip().split("\n")[-1]
        raise OllamactlError(f"{python} could not describe its runtime: {detail}") from None
    if not isinstance(data, dict):
        raise OllamactlError(f"{python} could not describe its runtime")
    return data


def system_interpreter() -> str:
    """A system Python of this version outside home directories (the venv's base)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for directory in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(directory) / version
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise OllamactlError(
        f"no system {version} to build the runtime on (this one lives in {sys.base_prefix}, "
        "which the service user cannot use)",
        hint=f"install {version} from the distribution (apt-get install {version}-venv)")


_NATIVE_SUFFIXES = (".so", ".dylib", ".dll", ".pyd")


def fingerprint() -> str:
    """What the built runtime is a copy of: the interpreter version, every installed
    distribution with its RECORD (a reinstall or upgrade changes it), every native library by
    size and content (a rebuild in place changes it) and ollamactl's own files."""
    import hashlib

    digest = hashlib.sha256(sys.version.encode())
    source = Path(sysconfig.get_paths()["purelib"])
    for entry in sorted(source.iterdir()):
        digest.update(entry.name.encode() + b"\0")
        record = entry / "RECORD"
        if entry.name.endswith(".dist-info") and record.is_file():
            digest.update(record.read_bytes())
    for path in sorted(source.rglob("*")):
        if _is_native(path):
            digest.update(f"{path.relative_to(source)}:{path.stat().st_size}:".encode())
            with path.open("rb") as library:
                digest.update(hashlib.file_digest(library, "sha256").digest())
    package = Path(__file__).resolve().parent.parent
    from ollamactl.templating import template_root

    for root in (package, Path(str(template_root()))):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                st = path.stat()
                digest.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _is_native(path: Path) -> bool:
    name = path.name
    return (name.endswith(_NATIVE_SUFFIXES) or ".so." in name) and path.is_file() \
        and not path.is_symlink()


def is_current(ctx: Context, wanted: str | None = None) -> bool:
    """True when the runtime under /opt/ollamactl was built from this very environment
    (``wanted``: its :func:`fingerprint`, when the caller has it already)."""
    try:
        return ctx.path(STAMP).read_text().strip() == (wanted or fingerprint())
    except FileNotFoundError:
        return False


def build(ctx: Context) -> Runtime:
    """Build the self-contained runtime under ``/opt/ollamactl`` (replacing an older build)."""
    runtime = built_runtime()
    venv = ctx.path(runtime.prefix)
    base = system_interpreter()
    wanted = fingerprint()     # hashes every native library: once per build
    if is_current(ctx, wanted):
        return runtime
    if venv.exists():
        ctx.runner.remove(venv, recursive=True, why="replace the previous runtime")
    ctx.runner.make_dir(ctx.path(RUNTIME_DIR), why="self-contained runtime")
    ctx.runner.run(cmd(base, "-I", "-m", "venv", "--without-pip", str(venv),
                       why="a venv the service user can run"))
    source = Path(sysconfig.get_paths()["purelib"])
    target = venv / _relative_purelib()
    ctx.runner.plan.append(PlanStep("copy", f"{source}/* -> {target}",
                                    "ollamactl's dependencies and bundled models"))
    if ctx.dry_run:
        return runtime
    try:
        for entry in sorted(source.iterdir()):
            if entry.name.startswith(_EDITABLE_MARKERS) or entry.name in ("ollamactl",
                                                                          "__pycache__"):
                continue
            _link_or_copy(entry, target / entry.name)
        package = Path(__file__).resolve().parent.parent
        shutil.copytree(package, target / "ollamactl",
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        from ollamactl.templating import template_root

        shutil.copytree(str(template_root()), target / "ollamactl" / "templates",
                        dirs_exist_ok=True)
        for path in [venv, *venv.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
    except OSError as exc:
        raise OllamactlError(f"cannot build the runtime in {venv}: {exc}") from exc
    ctx.runner.write_file(ctx.path(STAMP), wanted + "\n", backup=False,
                          why="what the runtime was built from")
    return runtime


def _relative_purelib() -> str:
    return f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def _link_or_copy(source: Path, target: Path) -> None:
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, copy_function=link,
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    elif source.is_symlink():
        target.symlink_to(os.readlink(source))
    else:
        link(str(source), str(target))
