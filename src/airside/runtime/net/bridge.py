"""The worker's container network: a Linux bridge, an address pool and a firewall, all through CNI.

`BridgeNetwork(config)` is set up once per runtime (`setup()`: the plugins are there, the pool's firewall
is set, the DNS forwarder runs when the rule needs it). Then, per container:

- `attach(handle, netns)`: CNI ADD of the list `bridge` (+ `host-local` IPAM over the pool, the gateway
  and a default route) as eth0, and of `loopback` (lo up); returns the address, gateway, and the
  container's resolv.conf and hosts text. Masquerade, forwarding and restricted_networks are the pool's
  firewall (`restrict`), set once, not per container. A failed attach leaves what did succeed (lo, say):
  `detach` releases it, as OCIRuntime does on any failure of prepare.
- `detach(handle, netns)`: CNI DEL of both; idempotent, also after a restart of the worker (the ADD
  result is cached on disk). Called once the namespace is unmounted (`netns=None`), DEL only gives the
  address back: the kernel removes the veth with the namespace, which is cheaper than deleting it first.
- `prune(keep)`: DEL of every container id of this runtime (`prefix`) with a cached result that is not
  in `keep`: what a crash between ADD and the container's removal leaves.

The bridge, IPAM leases and result cache are host-wide (one bridge per pool, named from it, under
`cni_dir`), so several workers on one host share them the way CNI plugins expect (host-local locks its
store); container ids carry each runtime's prefix, so a worker only ever prunes its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from airside.core import log as logging

from . import dns, restrict
from .cni import Attachment, Chain, CNIError

log = logging.get("airside.runtime.net")

DEFAULT_PLUGIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
DEFAULT_CNI_DIR = Path("/run/airside/cni")


class NetworkError(Exception):
    """The container network cannot be set up or used; the message says why."""


@dataclass(frozen=True)
class NetworkConfig:
    pool: str = "10.80.0.0/16"
    dns_servers: list[str] = field(default_factory=list)
    restricted: list[str] = field(default_factory=list)
    plugin_dirs: tuple[Path, ...] = DEFAULT_PLUGIN_DIRS
    cni_dir: Path = DEFAULT_CNI_DIR
    resolv_conf: Path = Path("/etc/resolv.conf")

    @property
    def key(self) -> str:
        return hashlib.sha256(str(ipaddress.ip_network(self.pool)).encode()).hexdigest()[:8]

    @property
    def bridge(self) -> str:
        return f"airside{self.key[:7]}"  # ≤ 15 characters (IFNAMSIZ)

    @property
    def admin_chain(self) -> str:
        return f"AIRSIDE-{self.key}"  # the pool's filter chain (restrict.apply)

    @property
    def name(self) -> str:
        return f"airside-{self.key}"


@dataclass(frozen=True)
class Attached(Attachment):
    """An attachment with the files the container gets: resolv.conf and hosts."""

    resolv_conf: str = ""
    hosts: str = ""


def conflists(cfg: NetworkConfig) -> tuple[dict, dict]:
    """The two CNI network configuration lists: the bridge network (eth0) and loopback (lo); pure."""
    net = ipaddress.ip_network(cfg.pool)
    bridge = {
        "cniVersion": "1.0.0",
        "name": cfg.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": cfg.bridge,
                "isGateway": True,
                "ipMasq": False,  # the pool's one masquerade rule (restrict.apply) does it for every container
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(net)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(cfg.cni_dir / "ipam"),
                },
            },
        ],
    }
    loopback = {"cniVersion": "1.0.0", "name": f"{cfg.name}-lo", "plugins": [{"type": "loopback"}]}
    return bridge, loopback


class BridgeNetwork:
    def __init__(self, config: NetworkConfig, prefix: str) -> None:
        self.config = config
        self.prefix = prefix
        bridge, loopback = conflists(config)
        cache = config.cni_dir / "results"
        self.chain = Chain(bridge, config.plugin_dirs, cache)
        self.lo = Chain(loopback, config.plugin_dirs, cache)
        self.dns = dns.choose(config.dns_servers, dns.read_resolv(config.resolv_conf))
        self.gateway = str(next(ipaddress.ip_network(config.pool).hosts()))  # host-local's default gateway
        self._forwarder: dns.Forwarder | None = None

    def container_id(self, handle: str) -> str:
        return f"{self.prefix}-{handle.replace('+', '_')}"

    def setup(self) -> None:
        missing = self.chain.missing_plugins() + self.lo.missing_plugins()
        if missing:
            dirs = ", ".join(map(str, self.config.plugin_dirs))
            raise NetworkError(
                f"CNI plugin(s) {', '.join(missing)} not found in {dirs}: install Debian's "
                "containernetworking-plugins, or set container_network to loopback"
            )
        try:
            restrict.apply(self.config.admin_chain, self.config.bridge, self.config.pool, self.config.restricted)
        except restrict.FirewallError as e:
            raise NetworkError(f"restricted_networks: {e}") from None
        if self.dns.forward_to and self._forwarder is None:
            try:
                self._forwarder = dns.Forwarder(self.gateway, self.dns.forward_to).start()
            except OSError as e:
                raise NetworkError(f"could not start the DNS forwarder on {self.gateway}:53: {e}") from None
        if not self.dns.nameservers:
            log.warning("containers get no DNS servers: the worker has none and dns_servers is empty")

    def attach(self, handle: str, netns: Path, hostname: str) -> Attached:
        cid = self.container_id(handle)
        lo_error: list[CNIError] = []

        def lo_up() -> None:
            try:
                self.lo.add(cid, str(netns), "lo")
            except CNIError as e:
                lo_error.append(e)

        lo = threading.Thread(target=lo_up, name=f"lo-{handle}")  # independent of eth0: side by side
        lo.start()
        try:
            a = self.chain.add(cid, str(netns), "eth0")  # a failed ADD undoes itself (Chain.add)
        except CNIError as e:
            lo.join()
            raise NetworkError(str(e)) from None
        lo.join()
        if lo_error:
            raise NetworkError(str(lo_error[0]))
        gateway = a.gateway or self.gateway
        return Attached(
            a.address, gateway, a.result, dns.resolv_conf(self.dns, gateway), dns.hosts_file(a.ip, hostname)
        )

    def detach(self, handle: str, netns: Path | None) -> None:
        self._release(self.container_id(handle), str(netns) if netns is not None and netns.exists() else "")

    def _release(self, cid: str, ns: str) -> None:
        try:
            self.chain.delete(cid, ns, "eth0")
            if ns:
                self.lo.delete(cid, ns, "lo")
            else:
                self.lo.forget(cid)  # lo went with its namespace: nothing for the plugin to do
        except CNIError as e:
            raise NetworkError(str(e)) from None

    def is_attached(self, handle: str) -> bool:
        """Whether the container has a cached ADD result (a loopback or host container never has)."""
        return self.chain.cached(self.container_id(handle)) is not None

    def attached(self) -> list[str]:
        """Container ids of this runtime with a cached ADD result."""
        return [c for c in self.chain.cached_ids() if c.startswith(self.prefix + "-")]

    def prune(self, keep_handles: set[str]) -> list[str]:
        keep = {self.container_id(h) for h in keep_handles}
        pruned = []
        for cid in self.attached():
            if cid in keep:
                continue
            try:
                self._release(cid, "")  # its namespace is unmounted before (OCIRuntime._prune_netns)
            except NetworkError as e:
                log.warning("could not release a leftover container network", container_id=cid, error=str(e))
            pruned.append(cid)
        if pruned:
            log.info("released leftover container networks", count=len(pruned))
        return pruned

    def remove(self) -> None:
        """Remove the pool's bridge and firewall rules (tests and benchmarks; a worker leaves them, as other
        workers on the host may share the pool)."""
        restrict.clear(self.config.admin_chain, self.config.bridge, self.config.pool)
        subprocess.run(["ip", "link", "del", self.config.bridge], capture_output=True)

    def close(self) -> None:
        if self._forwarder is not None:
            self._forwarder.stop()
            self._forwarder = None
