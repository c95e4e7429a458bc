"""Name resolution inside bridge-networked containers: which servers, the files, and a forwarder.

The rule (`choose`):
1. `dns_servers` set: containers use exactly those.
2. Else the worker's own resolvers (its /etc/resolv.conf), without the loopback ones (127.0.0.0/8,
   ::1): a container has a loopback of its own, so 127.0.0.53 (systemd-resolved) or 127.0.0.11
   (Docker's embedded DNS) would be its own, empty, address.
3. If only loopback resolvers remain, the worker forwards DNS for its containers: a `Forwarder` on the
   bridge's gateway address, port 53 (UDP and TCP), relays each query to the first of those resolvers,
   and containers use the gateway as their nameserver.
Search domains and options (ndots, for a Kubernetes pod's resolv.conf) are kept from the worker's file.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path

from airside.core import log as logging

log = logging.get("airside.runtime.net")

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
RELAY_TIMEOUT = 5.0


@dataclass(frozen=True)
class HostResolv:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def read_resolv(path: Path = Path("/etc/resolv.conf")) -> HostResolv:
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return HostResolv()
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return HostResolv(servers, search, options)


def is_loopback(server: str) -> bool:
    try:
        return ipaddress.ip_address(server.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Choice:
    nameservers: list[str]  # what a container's resolv.conf names ("" = the gateway: filled in per attach)
    search: list[str]
    options: list[str]
    forward_to: str | None  # the loopback resolver the worker forwards to, when it must


def choose(dns_servers: list[str], host: HostResolv) -> Choice:
    if dns_servers:
        return Choice(list(dns_servers), host.search, host.options, None)
    reachable = [s for s in host.nameservers if not is_loopback(s)]
    if reachable:
        return Choice(reachable, host.search, host.options, None)
    loop = host.nameservers[0] if host.nameservers else None
    if loop is None:
        return Choice([], host.search, host.options, None)
    return Choice([""], host.search, host.options, loop)


def resolv_conf(choice: Choice, gateway: str) -> str:
    lines = [f"nameserver {s or gateway}" for s in choice.nameservers]
    if choice.search:
        lines.append("search " + " ".join(choice.search))
    if choice.options:
        lines.append("options " + " ".join(choice.options))
    return "\n".join(lines) + "\n"


def hosts_file(ip: str, hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"


# ---- the forwarder -----------------------------------------------------------------------------------
class _Relay(socketserver.ThreadingMixIn):
    """What both relays' servers share: daemon threads, a shared port (workers on one host share a pool's
    gateway), and a bind that works before the gateway address exists (the bridge comes with the first ADD)."""

    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = True
    upstream: tuple[str, int]
    socket: socket.socket

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        super().server_bind()  # type: ignore[misc]


class _UDP(_Relay, socketserver.UDPServer):
    pass


class _TCP(_Relay, socketserver.TCPServer):
    pass


class _UDPRelay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        query, sock = self.request
        up = self.server.upstream  # type: ignore[attr-defined]
        with socket.socket(socket.AF_INET6 if ":" in up[0] else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(RELAY_TIMEOUT)
            try:
                s.sendto(query, up)
                answer, _ = s.recvfrom(65535)
            except OSError:
                return  # the client retries; a resolver that does not answer is the host's problem
        sock.sendto(answer, self.client_address)


class _TCPRelay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        up = self.server.upstream  # type: ignore[attr-defined]
        client: socket.socket = self.request
        client.settimeout(RELAY_TIMEOUT)
        try:
            with socket.create_connection(up, timeout=RELAY_TIMEOUT) as s:
                while (query := _read_message(client)) is not None:
                    s.sendall(query)
                    if (answer := _read_message(s)) is None:
                        return
                    client.sendall(answer)
        except OSError:
            return


def _read_message(s: socket.socket) -> bytes | None:
    """One DNS-over-TCP message: its two-byte length and the message (None at the end of the stream)."""
    head = _read_exact(s, 2)
    body = _read_exact(s, int.from_bytes(head, "big")) if head is not None else None
    return head + body if head is not None and body is not None else None


def _read_exact(s: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class Forwarder:
    """DNS relay on `listen`:53 (UDP and TCP) to `upstream`:53; bytes only, no parsing or caching."""

    def __init__(self, listen: str, upstream: str, port: int = 53) -> None:
        self.listen = listen
        self.upstream = (upstream, 53)
        self.port = port
        self._servers: list[socketserver.BaseServer] = []

    def start(self) -> Forwarder:
        for cls, handler in ((_UDP, _UDPRelay), (_TCP, _TCPRelay)):
            srv = cls((self.listen, self.port), handler)
            srv.upstream = self.upstream
            self._servers.append(srv)
            threading.Thread(target=srv.serve_forever, name=f"dns-{cls.__name__}", daemon=True).start()
        log.info("dns forwarder started", listen=f"{self.listen}:{self.port}", upstream=self.upstream[0])
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers.clear()
