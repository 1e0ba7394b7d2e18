"""Every doctor check, in the order they are shown, and running them against a Probe.

The generic checks live in ``checks_*.py`` here; each platform unit of
:mod:`ollamactl.service.platforms` holds its own (registered for that platform only). A
platform's check may name the generic check it belongs after (``after=``), so a systemd host
sees its unit checks beside ``service.unit``, as one list.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Iterable

from ollamactl.doctor.finding import FAIL, SKIP, Finding
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import CHECKS, Check
from ollamactl.errors import OllamactlError

log = logging.getLogger(__name__)

#: The modules that hold the generic checks, in the order their findings are shown; the
#: platform units follow in the chooser's order.
CHECK_MODULES = ("checks_service", "checks_network", "checks_exposure", "checks_settings",
                 "checks_storage", "checks_system", "checks_gpu", "checks_amd", "checks_logs")


def all_checks() -> list[Check]:
    from ollamactl.service.platforms import BACKENDS

    modules = [f"ollamactl.doctor.{name}" for name in CHECK_MODULES]
    modules += dict.fromkeys(platform.__module__ for platform in BACKENDS)
    for name in modules:
        importlib.import_module(name)
    rank = {name: index for index, name in enumerate(modules)}
    ordered = sorted(CHECKS.values(), key=lambda item: rank.get(item.module, len(rank)))
    placed = [item for item in ordered if item.after is None]
    for item in ordered:
        if item.after is None:
            continue
        ids = [other.id for other in placed]
        at = ids.index(item.after) + 1 if item.after in ids else len(placed)
        while at < len(placed) and placed[at].after == item.after:
            at += 1
        placed.insert(at, item)
    return placed


def run_checks(probe: Probe, only: Iterable[str] = ()) -> list[Finding]:
    """Run every check (or those whose id or area is in ``only``), in registry order.

    An expected failure while inspecting (a command that failed, a file that cannot be read)
    becomes that check's finding; a bug keeps its traceback.
    """
    wanted = set(only)
    findings = []
    for item in all_checks():
        if wanted and item.id not in wanted and item.area not in wanted:
            continue
        started = time.perf_counter()
        try:
            finding = item.func(probe)
        except OllamactlError as exc:
            finding = Finding("", FAIL, f"could not inspect: {exc.message}", exc.hint or "")
        except OSError as exc:
            finding = Finding("", SKIP, f"could not inspect: {exc.strerror or exc}")
        log.debug("doctor %s: %s in %.1f ms", item.id, finding.status,
                  (time.perf_counter() - started) * 1000)
        findings.append(dataclasses.replace(finding, id=item.id, title=item.title,
                                            area=item.area))
    return findings
