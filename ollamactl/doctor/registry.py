"""The check registry: each check is a small function of a Probe, registered by id and area.

A leaf (it imports only :mod:`ollamactl.doctor.finding`): the platform units under
``ollamactl.service`` register their own checks here, for their platform only, without an
import cycle. :mod:`ollamactl.doctor.suite` imports every module that holds checks and runs them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ollamactl.doctor.finding import Finding, skip

if TYPE_CHECKING:
    from ollamactl.doctor.probe import Probe
    from ollamactl.service.base import Platform

CheckFn = Callable[["Probe"], Finding]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    area: str
    func: CheckFn
    #: The platform units (or their shared base) the check applies to; () for every one.
    platforms: tuple[type[Platform], ...] = ()
    #: Shown right after this check (a platform's check beside the generic ones of its kind).
    after: str | None = None
    #: The module that defines it: checks are shown in the order of their modules.
    module: str = ""


CHECKS: dict[str, Check] = {}


def check(check_id: str, title: str, *, area: str, platforms: Sequence[type[Platform]] = (),
          needs: Callable[[Probe], Finding | None] | None = None,
          after: str | None = None) -> Callable[[CheckFn], CheckFn]:
    """Register ``func`` as the check ``check_id`` (``area.name``).

    With ``platforms``, the check runs only where the probe's platform is one of them and
    skips elsewhere ("not systemd (linux-watchdog)"); then ``needs``, when given, may return
    the finding that stands for the check instead (a skip: "the unit is not installed"). The
    function it returns does the same when called directly.
    """
    def register(func: CheckFn) -> CheckFn:
        if check_id in CHECKS:
            raise ValueError(f"duplicate doctor check {check_id}")
        guarded = _guard(platforms, needs, func) if platforms or needs else func
        CHECKS[check_id] = Check(check_id, title, area, guarded, tuple(platforms), after,
                                 func.__module__)
        return guarded
    return register


def _guard(platforms: Sequence[type[Platform]],
           needs: Callable[[Probe], Finding | None] | None, func: CheckFn) -> CheckFn:
    kinds = tuple(platforms)
    families = " or ".join(dict.fromkeys(p.family for p in platforms))

    @functools.wraps(func)
    def guarded(p: Probe) -> Finding:
        if kinds and not isinstance(p.platform, kinds):
            return skip(f"not {families} ({p.platform.name})")
        return (needs(p) if needs is not None else None) or func(p)
    return guarded
