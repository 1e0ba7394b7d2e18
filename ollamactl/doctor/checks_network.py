"""Network checks: the server answers, who owns the port, exposure, CORS origins, proxies."""

from __future__ import annotations

import os
import socket

from ollamactl import settings
from ollamactl.doctor.finding import Finding, Fix, fail, ok, skip, warn
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import check

LISTEN = "0A"


@check("server.reachable", "Server answers on OLLAMA_HOST", area="network")
def reachable(p: Probe) -> Finding:
    """C2: ``GET /`` on the connectable address (0.0.0.0 -> 127.0.0.1)."""
    answer = p.http("/")
    if answer.status == 200:
        return ok(f"{answer.url} answers: {answer.body.strip()[:40] or 'empty body'}")
    summary = f"no server at {answer.url} ({answer.error or f'HTTP {answer.status}'})"
    if p.service_running:
        return fail(summary, "the service runs but does not answer; see `ollamactl logs -n 50`",
                    Fix("restart it", (("ollamactl", "restart"),), safe=True))
    return warn(summary, "the server is not started",
                Fix("start it", (("ollamactl", "start"),), safe=p.service_installed))


def listeners(p: Probe, port: int) -> list[tuple[str, int]]:
    """(local address, socket inode) of TCP sockets listening on ``port`` (``ss -ltn``)."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (p.read(name) or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            address, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) == port:
                found.append((address, int(fields[9])))
    return found


def socket_owners(p: Probe, inodes: set[int]) -> dict[int, str]:
    """pid -> command name of the processes holding those socket inodes."""
    owners: dict[int, str] = {}
    proc = p.path("/proc")
    wanted = {f"socket:[{i}]" for i in inodes}
    try:
        pids = [e for e in proc.iterdir() if e.name.isdigit()]
    except OSError:
        return owners
    for entry in pids:
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                owners[int(entry.name)] = (entry / "comm").read_text().strip()
        except OSError:
            continue
    return owners


@check("server.port-owner", "Port owned by our server", area="network")
def port_owner(p: Probe) -> Finding:
    """C3: the listener of the port (``/proc/net/tcp*`` + ``/proc/<pid>/fd``)."""
    if not p.platform.has_procfs:
        return skip("reads /proc/net/tcp (Linux only)")
    port = p.bind_address.port
    found = listeners(p, port)
    if not found:
        if p.service_running:
            return fail(f"the service runs but nothing listens on port {port}")
        return ok(f"port {port} is free")
    owners = socket_owners(p, {inode for _, inode in found})
    if not owners:
        return skip(f"port {port} is in use; its owner is not visible (run as root)")
    service_pid = p.service_pid
    names = ", ".join(f"{pid} ({name})" for pid, name in sorted(owners.items()))
    if service_pid and service_pid in owners:
        return ok(f"port {port} belongs to the service ({names})")
    if any("ollama" in name for name in owners.values()):
        if p.service_running:
            return warn(f"a second server holds port {port}: {names}",
                        "another Ollama (tray app, brew service, container) answers instead of "
                        "the service", Fix("stop the duplicate, or move one to another port"))
        return ok(f"port {port} belongs to a server started by hand: {names}")
    return fail(f"port {port} is held by another program: {names}",
                fix=Fix("stop it, or choose another port with `ollamactl env set OLLAMA_HOST "
                        f"127.0.0.1:{port + 1}`"))


@check("settings.host-exposure", "Server bound to loopback", area="network")
def host_exposure(p: Probe) -> Finding:
    """C8: OLLAMA_HOST parsed as upstream does."""
    address = p.bind_address
    if address.is_loopback:
        return ok(f"binds {address} (this machine only)")
    fix = Fix("bind to loopback and put an authenticating proxy in front for remote users",
              (("ollamactl", "env", "set", "OLLAMA_HOST", f"127.0.0.1:{address.port}"),))
    if address.is_all_interfaces:
        return warn(f"binds {address}: every network this machine is on can use the API",
                    "the Ollama API has no authentication; anyone who reaches the port can "
                    "pull, delete and run models", fix)
    return warn(f"binds {address}: reachable from that network without authentication", fix=fix)


@check("settings.origins", "CORS origins are explicit", area="network")
def origins(p: Probe) -> Finding:
    """C10: OLLAMA_ORIGINS entries."""
    raw = p.setting("OLLAMA_ORIGINS")
    if not raw.strip():
        return ok("only the built-in local origins")
    try:
        entries = settings.parse_origins(raw)
    except settings.Invalid as exc:
        return fail(f"OLLAMA_ORIGINS is malformed: {exc}")
    fix = Fix("list the exact origins, e.g. chrome-extension://<extension id>")
    if "*" in entries:
        return fail("OLLAMA_ORIGINS=* lets every web page you visit call the API", fix=fix)
    wild = [e for e in entries if e.endswith("://*")]
    if wild:
        return warn(f"wildcard origins {', '.join(wild)} allow every extension/app of that kind",
                    fix=fix)
    return ok(f"{len(entries)} explicit origin(s)")


@check("network.proxy", "Proxy settings reach the service sanely", area="network")
def proxy(p: Probe) -> Finding:
    """C11: HTTPS_PROXY in the service's settings, NO_PROXY with localhost, no HTTP_PROXY."""
    service = p.service_env
    env = service if service is not None else p.environ
    where = "the service's settings" if service is not None else "the environment"
    http_proxy = env.get("HTTP_PROXY") or env.get("http_proxy")
    https_proxy = env.get("HTTPS_PROXY") or env.get("https_proxy")
    no_proxy = (env.get("NO_PROXY") or env.get("no_proxy") or "").split(",")
    if http_proxy:
        return warn(f"HTTP_PROXY is set in {where}",
                    "plain-HTTP calls, including local clients of the server, go through the "
                    "proxy; Ollama advises HTTPS_PROXY only",
                    Fix("remove it", (("ollamactl", "env", "unset", "HTTP_PROXY"),)))
    if https_proxy and not {"localhost", "127.0.0.1"} <= {n.strip() for n in no_proxy}:
        return warn("HTTPS_PROXY is set but NO_PROXY lacks localhost,127.0.0.1",
                    fix=Fix("set NO_PROXY", (("ollamactl", "env", "set", "NO_PROXY",
                                              "localhost,127.0.0.1"),)))
    shell = p.environ.get("HTTPS_PROXY") or p.environ.get("https_proxy")
    if service is not None and shell and not https_proxy:
        return warn("HTTPS_PROXY is set in your shell but not for the service, so pulls from the "
                    "service do not use it",
                    fix=Fix("persist it", (("ollamactl", "env", "set", "HTTPS_PROXY", shell),)))
    return ok("HTTPS_PROXY " + ("set, NO_PROXY covers localhost" if https_proxy else "not set"))


@check("network.lan-reachability", "API not reachable from other hosts", area="network")
def lan_reachability(p: Probe) -> Finding:
    """C9: when bound beyond loopback, does the API answer on this host's own addresses?"""
    address = p.bind_address
    if address.is_loopback:
        return skip("bound to loopback only: other hosts cannot reach it")
    import psutil

    addrs = [a.address for nic in psutil.net_if_addrs().values() for a in nic
             if a.family == socket.AF_INET and not a.address.startswith("127.")]
    open_on = []
    for ip in addrs[:8]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.3)
            if sock.connect_ex((ip, address.port)) == 0:
                open_on.append(ip)
    if open_on:
        return fail(f"the API answers on {', '.join(open_on)}:{address.port} without "
                    "authentication", fix=Fix("firewall the port or bind to loopback"))
    return ok(f"nothing answers on this host's addresses at port {address.port}")
