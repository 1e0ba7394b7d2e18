"""Settings checks: every known setting validates, unknown names, shell-only settings."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from ollamactl import settings
from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.errors import SettingError


def invalid_settings(env: Mapping[str, str]) -> list[str]:
    """``NAME=value: reason`` for each known setting in ``env`` that fails strict validation."""
    bad = []
    for name, value in sorted(env.items()):
        setting = settings.SETTINGS.get(name)
        if setting is None or not value.strip():
            continue
        try:
            setting.validate(value)
        except SettingError as exc:
            bad.append(f"{name}={value!r}: {exc.reason} (accepts {exc.accepted})")
    return bad


def _validity(env: Mapping[str, str], where: str) -> Finding:
    bad = invalid_settings(env)
    known = [n for n in env if n in settings.SETTINGS]
    if bad:
        return fail(f"{len(bad)} setting(s) in {where} do not validate",
                    "\n".join(bad) + "\nthe server falls back to defaults for these "
                    "(Ollama reads an unparsable boolean as true)",
                    Fix("set valid values with `ollamactl env set NAME VALUE`"))
    return ok(f"{len(known)} known setting(s) in {where}, all valid")


@check("settings.service-valid", "Service settings validate", area="settings")
def service_valid(p: Probe) -> Finding:
    env = p.service_env
    if env is None:
        return skip("no installed service")
    return _validity(env, "the service's settings")


@check("settings.process-valid", "Environment settings validate", area="settings")
def process_valid(p: Probe) -> Finding:
    return _validity(p.environ, "this environment")


@check("settings.unknown", "No misspelt or obsolete OLLAMA_* names", area="settings")
def unknown(p: Probe) -> Finding:
    names = {n for n in (*p.environ, *(p.service_env or {})) if n.startswith("OLLAMA_")}
    unknown_names = sorted(n for n in names if n not in settings.SETTINGS)
    obsolete = sorted(n for n in names if n in settings.SETTINGS
                      and settings.SETTINGS[n].obsolete)
    lines = []
    for name in unknown_names:
        close = difflib.get_close_matches(name, list(settings.SETTINGS), n=1, cutoff=0.8)
        lines.append(f"{name}: unknown" + (f", did you mean {close[0]}?" if close else ""))
    lines += [f"{n}: obsolete upstream (ollamactl still honours it)" for n in obsolete]
    if unknown_names:
        return warn(f"{len(unknown_names)} unknown OLLAMA_* name(s): {', '.join(unknown_names)}",
                    "\n".join(lines), Fix("fix the spelling; the server ignores unknown names"))
    if obsolete:
        return ok(f"obsolete but honoured: {', '.join(obsolete)}", "\n".join(lines))
    return ok(f"{len(names)} OLLAMA_* name(s), all known")


@check("settings.shell-only", "Shell settings reach the service", area="settings")
def shell_only(p: Probe) -> Finding:
    """A variable exported in a shell does not reach the service (another process and user)."""
    service = p.service_env
    if service is None:
        return skip("no installed service; the server started by hand reads this environment")
    scoped = {n for n, s in settings.SETTINGS.items() if s.scope in ("server", "gpu")}
    only_here = sorted(n for n in p.environ if n in scoped and n != "OLLAMA_HOST"
                       and p.environ[n] != service.get(n))
    if only_here:
        return warn(f"set in this shell but not for the service: {', '.join(only_here)}",
                    "the service is another process; it never sees your shell's exports",
                    Fix("persist them", tuple(("ollamactl", "env", "set", n, p.environ[n])
                                              for n in only_here)))
    return ok("no server setting is only in this shell")
