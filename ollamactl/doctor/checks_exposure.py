"""Exposure checks: the API, and its /metrics, leave this machine only through a front that
authenticates.

The server has no authentication (as Ollama). Reaching it from other machines is safe only
through an nginx front that asks for a token or a password; the fronts ``ollamactl expose
nginx --install`` put in place say in their marker line where they listen and how they
authenticate (:func:`ollamactl.expose.install.installed_fronts`).
"""

from __future__ import annotations

from typing import Any

from ollamactl import settings
from ollamactl.doctor.finding import Finding, Fix, fail, ok, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check
from ollamactl.expose.install import installed_fronts

_WITH_TOKENS = ("ollamactl", "expose", "nginx", "--token-file", "TOKENS", "--install")


def _is_loopback(listen: str) -> bool:
    return settings.parse_host_lenient(listen).is_loopback


@check("network.exposure-front", "Exposed only through a front that authenticates",
       area="network")
def exposure_front(p: Probe) -> Finding:
    """A non-loopback bind, or a non-loopback nginx front, without auth in front -> fail."""
    fronts: list[dict[str, Any]] = installed_fronts(p.ctx)
    guarded = [f for f in fronts if f.get("auth") in ("bearer", "basic")]
    open_fronts = [f for f in fronts if f not in guarded
                   and not _is_loopback(str(f.get("listen", "")))]
    if open_fronts:
        where = ", ".join(f"{f.get('path')} on {f.get('listen')}" for f in open_fronts)
        return fail(f"nginx front without auth on the network: {where}",
                    "anyone who reaches it can pull, delete and run models",
                    Fix("re-render it with bearer tokens (`ollamactl expose token` makes one)",
                        (_WITH_TOKENS,)), fronts=fronts)
    address = p.bind_address
    if address.is_loopback:
        through = f"; {len(guarded)} front(s) with auth in front of it" if guarded else ""
        return ok(f"the server binds {address} (this machine only){through}", fronts=fronts)
    loopback_bind = ("ollamactl", "env", "set", "OLLAMA_HOST", f"127.0.0.1:{address.port}")
    if guarded:
        names = ", ".join(f"{f.get('name')} ({f.get('auth')}, {f.get('listen')})"
                          for f in guarded)
        return warn(f"the server binds {address}: the front {names} authenticates, but the "
                    "server's own port is reachable around it",
                    "bind the server to loopback when the front runs on this machine, or "
                    "firewall the port so only the front's host reaches it",
                    Fix("bind to loopback", (loopback_bind,)), fronts=fronts)
    return fail(f"the server binds {address} and no front that authenticates is in front of it",
                "the API has no authentication: anyone who reaches the port can use it",
                Fix("bind to loopback, and put an nginx front with tokens in front",
                    (loopback_bind, _WITH_TOKENS)), fronts=fronts)


@check("network.metrics-exposure", "/metrics is not open to the network", area="network")
def metrics_exposure(p: Probe) -> Finding:
    """OLLAMA_METRICS on (the default) with /metrics reachable from other machines without
    authentication -> warn: the server's own non-loopback port, or a front without auth.

    /metrics shows what /api/ps does (models, sizes, queue) plus counts and timings of requests
    and tokens, no prompts: an open API is the bigger hole (``network.exposure-front`` fails on
    it); this check names the scrape endpoint and the setting that turns it off.
    """
    enabled = settings.SETTINGS["OLLAMA_METRICS"].read_lenient(
        p.setting("OLLAMA_METRICS") or None, p.ctx.host)
    if not enabled:
        return ok("metrics are off (OLLAMA_METRICS=0)")
    fronts: list[dict[str, Any]] = installed_fronts(p.ctx)
    open_fronts = [f for f in fronts if f.get("auth") not in ("bearer", "basic")
                   and not _is_loopback(str(f.get("listen", "")))]
    address = p.bind_address
    turn_off = ("ollamactl", "env", "set", "OLLAMA_METRICS", "0")
    if open_fronts:
        where = ", ".join(f"{f.get('path')} on {f.get('listen')}" for f in open_fronts)
        return warn(f"/metrics is served without auth through the front {where}",
                    "anyone who reaches the front can read the models, their memory and the "
                    "request counts",
                    Fix("re-render the front with bearer tokens, or turn metrics off",
                        (_WITH_TOKENS, turn_off)), fronts=fronts)
    if address.is_loopback:
        return ok(f"/metrics answers on {address} only (this machine, or a front with auth)",
                  fronts=fronts)
    loopback_bind = ("ollamactl", "env", "set", "OLLAMA_HOST", f"127.0.0.1:{address.port}")
    guarded = [f for f in fronts if f.get("auth") in ("bearer", "basic")]
    around = " (a front authenticates, but the server's port is reachable around it)" \
        if guarded else ""
    return warn(f"/metrics is reachable without auth on {address}{around}",
                "the server binds a non-loopback address and has no authentication of its "
                "own: scrape through a front with tokens, or turn metrics off",
                Fix("bind to loopback behind a front with tokens, or turn metrics off",
                    (loopback_bind, turn_off)), fronts=fronts)
