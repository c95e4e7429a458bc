"""The pool's firewall: masquerade, forwarding, and restricted_networks, as rules per pool (never per container).

`apply(chain, bridge, pool, cidrs)` sets, idempotently:
- filter: a chain of the pool's own, jumped to first from FORWARD (traffic from the bridge) and INPUT
  (traffic from the bridge to the worker host itself): REJECT for each restricted CIDR, then ACCEPT for
  the pool's traffic out and the answers back (a host whose FORWARD policy is DROP, as Docker sets it,
  still forwards the pool);
- nat: one MASQUERADE rule for the pool's traffic leaving it.
The CNI bridge plugin could masquerade (`ipMasq`) and CNI's firewall plugin accept per container, but both
add and remove iptables rules for every container (≈110 ms of a task's start and stop here); rules for the
whole pool, set once at the worker's start, do the same and cost a container nothing.
"""

from __future__ import annotations

import subprocess

from airside.core import log as logging

log = logging.get("airside.runtime.net")


class FirewallError(Exception):
    pass


def _ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(["iptables", "-w", "10", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise FirewallError("iptables not found: install it (apt-get install iptables)") from None
    if check and r.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {r.stderr.strip()}")
    return r


def _pool_rules(chain: str, bridge: str, pool: str) -> list[tuple[str, list[str], bool]]:
    """The pool's rules outside its own chain: (table, rule, put first)."""
    return [
        ("filter", ["FORWARD", "-i", bridge, "-j", chain], True),
        ("filter", ["INPUT", "-i", bridge, "-j", chain], True),
        ("filter", ["FORWARD", "-o", bridge, "-d", pool, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                    "-j", "ACCEPT"], True),
        ("nat", ["POSTROUTING", "-s", pool, "!", "-d", pool, "-j", "MASQUERADE"], False),
    ]


def apply(chain: str, bridge: str, pool: str, cidrs: list[str]) -> None:
    if _ipt("-n", "-L", chain, check=False).returncode != 0:
        _ipt("-N", chain)
    _ipt("-F", chain)
    for cidr in cidrs:
        for proto, reject in (("tcp", "tcp-reset"), ("all", "icmp-port-unreachable")):
            _ipt("-A", chain, "-s", pool, "-d", cidr, "-p", proto, "-j", "REJECT", "--reject-with", reject)
    _ipt("-A", chain, "-s", pool, "-j", "ACCEPT")
    for table, rule, first in _pool_rules(chain, bridge, pool):
        if _ipt("-t", table, "-C", *rule, check=False).returncode != 0:
            _ipt("-t", table, *(["-I", rule[0], "1", *rule[1:]] if first else ["-A", *rule]))
    log.info("pool firewall set", chain=chain, pool=pool, restricted=cidrs)


def clear(chain: str, bridge: str, pool: str) -> None:
    """Remove the pool's rules and chain (no worker on this host uses the pool any more)."""
    for table, rule, _ in _pool_rules(chain, bridge, pool):
        while _ipt("-t", table, "-D", *rule, check=False).returncode == 0:
            pass
    if _ipt("-n", "-L", chain, check=False).returncode == 0:
        _ipt("-F", chain)
        _ipt("-X", chain)
