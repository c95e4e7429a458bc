"""A small world for container network tests, made with iproute2 and dnsmasq (never by the code under test).

`Peer(name, index)`: a network namespace of the test's own (`ip netns add`), joined to the host by a veth
pair: the host side has 10.123.<index>.1/30, the namespace side 10.123.<index>.2/30 (`.addr`). In it the
test can run an HTTP server (`serve_http`) and dnsmasq (`serve_dns`) answering names it chooses. A
bridge-networked container reaches `.addr` through the worker's gateway and the host's routing, as it
would reach any server outside the worker; the peer has no route to the container pool, so its answers
get back only if the worker masquerades the container's traffic (as a server on the internet would).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.procs import wait_for


def sh(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class Peer:
    def __init__(self, name: str, index: int) -> None:
        self.ns = f"airside-t-{name}"
        self.index = index
        self.host_if, self.ns_if = f"atp{index}h", f"atp{index}n"
        self.host_addr = f"10.123.{index}.1"
        self.addr = f"10.123.{index}.2"
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Peer:
        self.close()  # what an interrupted run may have left
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        for cmd in (
            ["ip", "addr", "add", f"{self.addr}/30", "dev", self.ns_if],
            ["ip", "link", "set", self.ns_if, "up"],
            ["ip", "link", "set", "lo", "up"],
        ):  # no default route: the peer answers only the host's address, so only masqueraded traffic gets back
            sh("ip", "netns", "exec", self.ns, *cmd)
        return self

    def run(self, *argv: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as f:  # the child keeps its own descriptor
            p = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def serve_file(self, tmp: Path, name: str, text: str, port: int = 8000) -> None:
        """Serve one file, `name` with `text`, over HTTP on `.addr`:`port` (its folder and log under `tmp`)."""
        root = tmp / f"www-{self.ns}"
        root.mkdir(exist_ok=True)
        (root / name).write_text(text)
        self.serve_http(root, port, tmp / f"http-{self.ns}.log")

    def serve_http(self, root: Path, port: int, log: Path) -> None:
        self.run(sys.executable, "-m", "http.server", "--bind", self.addr, "--directory", str(root), str(port),
                 log=log)
        self.wait_port(port, "the HTTP server")

    def serve_dns(self, names: dict[str, str], log: Path) -> None:
        args = [f"--address=/{n}/{ip}" for n, ip in names.items()]
        self.run("dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", "--log-queries",
                 f"--listen-address={self.addr}", "--port=53", "--user=root", *args, log=log)
        self.wait_port(53, "dnsmasq")

    def wait_port(self, port: int, what: str) -> None:
        def up() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex((self.addr, port)) == 0

        wait_for(up, timeout=20, what=f"{what} on {self.addr}:{port}")

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        self.procs.clear()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


def leftovers(pool_prefix: str, bridge: str, cni_dir: Path, state_dir: Path) -> dict[str, list[str]]:
    """What container networking could leak, counted: veths on the bridge, IPAM leases, result cache
    entries, namespace mounts below the state dir, and iptables rules naming a container address."""
    veths = [
        line.split(":")[1].strip().split("@")[0]
        for line in sh("ip", "-o", "link", "show", "master", bridge).splitlines()
    ] if Path(f"/sys/class/net/{bridge}").exists() else []
    ipam = cni_dir / "ipam"
    leases = sorted(p.name for p in ipam.rglob("*") if p.is_file() and p.name.startswith(pool_prefix))
    results = sorted(str(p.relative_to(cni_dir)) for p in (cni_dir / "results").rglob("*.json"))
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " - nsfs " in line and line.split()[4].startswith(str(state_dir))
    ]
    rules = [
        r for r in sh("iptables", "-S").splitlines() + sh("iptables", "-t", "nat", "-S").splitlines()
        if f"{pool_prefix}" in r and "/32" in r
    ]
    return {k: v for k, v in
            {"veths": veths, "leases": leases, "results": results, "netns": mounts, "rules": rules}.items() if v}


@contextlib.contextmanager
def loopback_dns(addr: str, names: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """dnsmasq on a loopback address of the host (a worker's own 127.0.0.x resolver), answering `names`."""
    with log.open("wb") as f:
        p = subprocess.Popen(
            ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", "--log-queries",
             f"--listen-address={addr}", "--port=53", "--user=root", *[f"--address=/{n}/{ip}" for n, ip in names.items()]],
            stdout=f, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "started" in log.read_text(), timeout=20, what=f"dnsmasq on {addr}")
        yield p
    finally:
        p.kill()
        p.wait(timeout=10)
