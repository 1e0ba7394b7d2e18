"""The check registry: each check is a small function of a Probe, registered by id and area."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ollamactl.doctor.finding import FAIL, SKIP, Finding
from ollamactl.doctor.probe import Probe
from ollamactl.errors import OllamactlError

log = logging.getLogger(__name__)

CheckFn = Callable[[Probe], Finding]

#: The modules that hold checks, in the order their findings are shown.
CHECK_MODULES = ("checks_service", "checks_network", "checks_exposure", "checks_settings",
                 "checks_storage", "checks_system", "checks_gpu", "checks_amd", "checks_logs",
                 "checks_platform")


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    area: str
    func: CheckFn


CHECKS: dict[str, Check] = {}


def check(check_id: str, title: str, *, area: str) -> Callable[[CheckFn], CheckFn]:
    """Register ``func`` as the check ``check_id`` (``area.name``)."""
    def register(func: CheckFn) -> CheckFn:
        if check_id in CHECKS:
            raise ValueError(f"duplicate doctor check {check_id}")
        CHECKS[check_id] = Check(check_id, title, area, func)
        return func
    return register


def all_checks() -> list[Check]:
    for name in CHECK_MODULES:
        importlib.import_module(f"ollamactl.doctor.{name}")
    return list(CHECKS.values())


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
