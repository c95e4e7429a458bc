"""The oci runtime's container networks, with real CNI plugins, runc, iptables and dnsmasq.

Each test has a pool of its own (10.124.<n>.0/24; the bridge is named from the pool) and a CNI state dir of
its own, so tests never share addresses with each other or with workers on the default pool. Servers live
in network namespaces the test makes (`netenv.Peer`), never on a network the test did not create.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airside.runtime import ContainerSpec, Mount, RuntimeError_, get_runtime
from airside.runtime.net import NetworkConfig, dns, netns
from airside.runtime.net.cni import Chain, CNIError
from airside.runtime.oci import OCIRuntime
from tests.netenv import Peer, leftovers, loopback_dns
from tests.procs import wait_for

from .conftest import collect, needs_busybox, needs_runc

pytestmark = [needs_runc, needs_busybox]

# busybox 1.35 (Debian) wget segfaults with -T: timeouts come from the timeout applet
HAVE_CNI = Path("/usr/lib/cni/bridge").exists()
needs_cni = pytest.mark.skipif(not HAVE_CNI, reason="needs CNI plugins (apt-get install containernetworking-plugins)")
pytestmark.append(needs_cni)

_pools = iter(range(10, 250))


@pytest.fixture
def net(tmp_path: Path) -> NetworkConfig:
    n = next(_pools)  # one pool per test in this session
    return NetworkConfig(pool=f"10.124.{n}.0/24", cni_dir=tmp_path / "cni", restricted=[])


def make(state: Path, cfg: NetworkConfig, runtimes: list[OCIRuntime]) -> OCIRuntime:
    rt = get_runtime("oci", state, network=cfg)
    assert isinstance(rt, OCIRuntime)
    runtimes.append(rt)
    return rt


@pytest.fixture
def runtimes() -> Iterator[list[OCIRuntime]]:
    made: list[OCIRuntime] = []
    yield made
    for rt in made:
        for h in rt.list():
            rt.destroy(h)
        rt.close()
        if rt.network is not None:
            rt.network.remove()  # the pool's bridge and firewall rules: the next run starts from nothing


def spec(handle: str, rootfs: Path, script: str, network: str = "bridge", **kw: object) -> ContainerSpec:
    return ContainerSpec(handle=handle, rootfs=rootfs, path="sh", args=["-c", script], network=network, **kw)  # type: ignore[arg-type]


def run(rt: OCIRuntime, s: ContainerSpec, timeout: float = 60) -> tuple[int, str]:
    rt.prepare(s)
    rt.start(s.handle)
    st = rt.wait(s.handle, timeout)
    assert st is not None, f"{s.handle} did not finish in {timeout} s"
    out = collect(rt, s.handle)
    return st.code, (out.get("stdout", b"") + out.get("stderr", b"")).decode(errors="replace")


def no_leftovers(prefix: str, bridge: str, cni_dir: Path, state_dir: Path) -> None:
    """Nothing of the containers' networks is left. The kernel removes a veth with its namespace, a moment
    after the namespace's last reference goes: wait for that, with a deadline."""
    deadline = time.monotonic() + 10
    while leftovers(prefix, bridge, cni_dir, state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(prefix, bridge, cni_dir, state_dir) == {}


def pool_prefix(cfg: NetworkConfig) -> str:
    return str(ipaddress.ip_network(cfg.pool).network_address).rsplit(".", 1)[0] + "."


# ---- reaching out ----------------------------------------------------------------------------------
def test_a_task_fetches_over_http_by_a_name_the_dns_answers(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    with Peer("files", 11) as peer:
        peer.serve_file(tmp_path, "hello.txt", "hello from the peer\n", 8000)
        peer.serve_dns({"files.airside.test": peer.addr}, tmp_path / "dns.log")
        cfg = NetworkConfig(pool=net.pool, cni_dir=net.cni_dir, dns_servers=[peer.addr])
        rt = make(tmp_path / "state", cfg, runtimes)
        code, out = run(rt, spec("fetch", fresh_rootfs, (
            "cat /etc/resolv.conf; ip -4 -o addr show eth0; ip route; ip -o link show lo; "
            "wget -q -O- http://files.airside.test:8000/hello.txt"
        )))
        assert code == 0, out
        assert "hello from the peer" in out
        assert f"nameserver {peer.addr}" in out
        assert f"inet {pool_prefix(cfg)}" in out  # an address from the pool
        assert f"default via {pool_prefix(cfg)}1" in out  # the gateway is the pool's first address
        assert "files.airside.test" in (tmp_path / "dns.log").read_text()  # asked the test's DNS
        assert "<LOOPBACK,UP," in out  # lo is up, as in any container


def test_restricted_networks_are_refused_and_the_rest_reached(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    with Peer("open", 12) as open_peer, Peer("shut", 13) as shut_peer:
        for p in (open_peer, shut_peer):
            p.serve_file(tmp_path, "x", p.ns)
        cfg = NetworkConfig(pool=net.pool, cni_dir=net.cni_dir, restricted=["10.123.13.0/24"])
        rt = make(tmp_path / "state", cfg, runtimes)
        code, out = run(rt, spec("restricted", fresh_rootfs, (
            f"timeout 5 wget -q -O- http://{open_peer.addr}:8000/x && echo OPEN-OK; "
            f"timeout 5 wget -q -O- http://{shut_peer.addr}:8000/x; echo shut-rc=$?"
        )))
        assert code == 0, out
        assert f"{open_peer.ns}OPEN-OK" in out
        assert "shut-rc=1" in out and shut_peer.ns not in out
        assert "refused" in out.lower(), out  # refused at once (REJECT), not a dropped packet's timeout


def test_loopback_has_no_route_out_and_host_shares_the_hosts(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    with Peer("lo", 14) as peer:
        peer.serve_file(tmp_path, "x", "reached", 8000)
        rt = make(tmp_path / "state", net, runtimes)
        code, out = run(rt, spec("lo", fresh_rootfs, f"ip -o link; timeout 3 wget -q -O- http://{peer.addr}:8000/x",
                                 network="loopback"))
        assert code != 0 and "reached" not in out
        assert "unreachable" in out.lower(), out
        assert "eth0" not in out
        code, out = run(rt, spec("host", fresh_rootfs, f"timeout 3 wget -q -O- http://{peer.addr}:8000/x",
                                 network="host"))
        assert (code, out) == (0, "reached")


def test_a_privileged_task_gets_a_namespace_of_its_own(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    rt = make(tmp_path / "state", net, runtimes)
    code, out = run(rt, spec("priv", fresh_rootfs, "readlink /proc/self/ns/net; ip -4 -o addr show eth0",
                             privileged=True))
    assert code == 0, out
    assert os.readlink("/proc/self/ns/net") not in out
    assert f"inet {pool_prefix(net)}" in out


def test_dns_is_forwarded_when_the_worker_only_has_a_loopback_resolver(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    # the worker's resolver is on 127.0.0.77 (like systemd-resolved's 127.0.0.53 or Docker's 127.0.0.11)
    dns_log = tmp_path / "dns.log"
    with loopback_dns("127.0.0.77", {"only.loopback.test": "10.9.8.7"}, dns_log):
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.77\nsearch example.internal\noptions ndots:3\n")
        cfg = NetworkConfig(pool=net.pool, cni_dir=net.cni_dir, resolv_conf=resolv)
        rt = make(tmp_path / "state", cfg, runtimes)
        # (nslookup also asks for AAAA, which this dnsmasq refuses: its exit code says nothing here)
        code, out = run(rt, spec("fwd", fresh_rootfs, "cat /etc/resolv.conf; nslookup only.loopback.test; true"))
        assert code == 0, out
        gateway = pool_prefix(cfg) + "1"
        assert f"nameserver {gateway}" in out and "127.0.0.77" not in out.split("Server")[0]
        assert "search example.internal" in out and "options ndots:3" in out
        assert "Address: 10.9.8.7" in out, out
        assert "only.loopback.test" in dns_log.read_text()


# ---- nothing leaks ---------------------------------------------------------------------------------
def test_fifty_concurrent_tasks_have_unique_addresses_and_leave_nothing(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    rt = make(tmp_path / "state", net, runtimes)
    go = tmp_path / "go"
    go.mkdir()
    handles = [f"c{i}" for i in range(50)]

    def prepare(h: str) -> None:
        rt.prepare(spec(h, fresh_rootfs, "ip -4 -o addr show eth0; while [ ! -e /go/now ]; do sleep 0.05; done",
                        mounts=[Mount(go, "/go", read_only=True)]))
        rt.start(h)

    threads = [threading.Thread(target=prepare, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(rt.list()) == sorted(handles)

    def addresses() -> dict[str, str] | None:
        found = {}
        for h in handles:
            out = b"".join(c.data for c in rt.logs(h, follow=False) if c.stream == "stdout").decode()
            if "inet " not in out:
                return None
            found[h] = out.split("inet ", 1)[1].split("/", 1)[0]
        return found

    addrs = wait_for(addresses, timeout=60, what="every container to print its address")
    assert len(set(addrs.values())) == 50, addrs  # unique while in use
    assert len(leftovers(pool_prefix(net), net.bridge, net.cni_dir, tmp_path / "state")["veths"]) == 50
    (go / "now").touch()
    for h in handles:
        assert rt.wait(h, 60) is not None
        rt.destroy(h)
    no_leftovers(pool_prefix(net), net.bridge, net.cni_dir, tmp_path / "state")


def test_a_restarted_worker_keeps_the_network_and_releases_it_on_destroy(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    with Peer("reattach", 15) as peer:
        peer.serve_file(tmp_path, "x", "still-here", 8000)
        state = tmp_path / "state"
        go = tmp_path / "go"
        go.mkdir()
        first = make(state, net, runtimes)
        first.prepare(spec("long", fresh_rootfs, (
            f"while [ ! -e /go/now ]; do sleep 0.05; done; timeout 5 wget -q -O- http://{peer.addr}:8000/x"
        ), mounts=[Mount(go, "/go", read_only=True)]))
        first.start("long")
        first.close()
        # a new runtime over the same state dir (the worker restarted): it prunes nothing that still runs
        second = make(state, net, runtimes)
        assert second.list() == ["long"]
        (go / "now").touch()
        st = second.wait("long", 60)
        assert st is not None and st.code == 0
        assert collect(second, "long").get("stdout") == b"still-here"
        second.destroy("long")
        no_leftovers(pool_prefix(net), net.bridge, net.cni_dir, state)


def test_orphaned_attachments_are_released_when_the_runtime_starts(
    tmp_path: Path, fresh_rootfs: Path, net: NetworkConfig, runtimes: list[OCIRuntime]
) -> None:
    state = tmp_path / "state"
    rt = make(state, net, runtimes)
    rt.prepare(spec("orphan", fresh_rootfs, "true"))
    assert leftovers(pool_prefix(net), net.bridge, net.cni_dir, state)["leases"]
    # the worker dies hard between attach and the container's removal: its directory is gone (a wiped
    # state dir, or a crash inside destroy), the lease, result and namespace mount are not
    cdir = rt.cdir("orphan")
    subprocess.run(["runc", "--root", str(state / ".runc"), "delete", "--force", "orphan"], capture_output=True)
    shutil.rmtree(cdir / "bundle")
    for p in cdir.iterdir():
        if p.name != "netns":
            p.unlink()
    rt.close()
    runtimes.remove(rt)
    assert set(leftovers(pool_prefix(net), net.bridge, net.cni_dir, state)) >= {"leases", "results", "netns"}
    make(state, net, runtimes)  # the next start releases them
    no_leftovers(pool_prefix(net), net.bridge, net.cni_dir, state)


# ---- faults ----------------------------------------------------------------------------------------
def test_an_exhausted_pool_refuses_the_container_with_the_reason_and_leaks_nothing(
    tmp_path: Path, fresh_rootfs: Path, runtimes: list[OCIRuntime]
) -> None:
    cfg = NetworkConfig(pool="10.124.254.0/30", cni_dir=tmp_path / "cni")  # one address: .2 (.1 is the gateway)
    rt = make(tmp_path / "state", cfg, runtimes)
    rt.prepare(spec("first", fresh_rootfs, "true"))
    with pytest.raises(RuntimeError_, match="no IP addresses available"):
        rt.prepare(spec("second", fresh_rootfs, "true"))
    assert rt.list() == ["first"]
    rt.destroy("first")
    no_leftovers("10.124.254.", cfg.bridge, cfg.cni_dir, tmp_path / "state")


def test_a_missing_plugin_is_named_when_the_runtime_starts(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for p in ("bridge", "loopback"):  # no host-local (the IPAM plugin bridge calls)
        (plugins / p).symlink_to(f"/usr/lib/cni/{p}")
    cfg = NetworkConfig(pool="10.124.253.0/24", cni_dir=tmp_path / "cni", plugin_dirs=(plugins,))
    with pytest.raises(RuntimeError_, match=r"CNI plugin\(s\) host-local not found in .*plugins"):
        get_runtime("oci", tmp_path / "state", network=cfg)


def test_a_plugin_failing_at_add_is_reported_and_undone(tmp_path: Path, net: NetworkConfig) -> None:
    chain = Chain({"cniVersion": "1.0.0", "name": "airside-bad", "plugins": [
        {"type": "bridge", "bridge": "airsidebad0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.124.252.0/24"}]],
                                                        "dataDir": str(tmp_path / "ipam")}},
        {"type": "host-device", "device": "no-such-device0"},
    ]}, [Path("/usr/lib/cni")], tmp_path / "results")
    ns = tmp_path / "ns"
    netns.create(ns)
    try:
        with pytest.raises(CNIError, match="host-device"):
            chain.add("bad1", str(ns))
        assert not list((tmp_path / "ipam").rglob("10.124.252.*"))  # the bridge's lease was given back
        assert chain.cached("bad1") is None
    finally:
        netns.remove(ns)
        subprocess.run(["ip", "link", "del", "airsidebad0"], capture_output=True)


def _query(name: str, qid: int) -> bytes:
    """A DNS query for the A record of `name` (RFC 1035 wire format, recursion desired)."""
    q = qid.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00"
    q += b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.split(".")) + b"\x00"
    return q + b"\x00\x01\x00\x01"


def test_the_forwarder_relays_udp_and_tcp(tmp_path: Path) -> None:
    fwd = dns.Forwarder("127.0.0.79", "127.0.0.78", port=5353)
    with loopback_dns("127.0.0.78", {"relayed.test": "10.9.8.6"}, tmp_path / "dns.log"):
        fwd.start()
        try:
            answer_ip = bytes([10, 9, 8, 6])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(5)
                u.sendto(_query("relayed.test", 0x1234), ("127.0.0.79", 5353))
                answer, _ = u.recvfrom(4096)
            assert answer[:2] == b"\x12\x34" and answer_ip in answer
            with socket.create_connection(("127.0.0.79", 5353), timeout=5) as t:
                for qid in (0x0101, 0x0202):  # two messages on one connection
                    q = _query("relayed.test", qid)
                    t.sendall(len(q).to_bytes(2, "big") + q)
                    n = int.from_bytes(t.recv(2), "big")
                    body = b""
                    while len(body) < n:
                        body += t.recv(n - len(body))
                    assert body[:2] == qid.to_bytes(2, "big") and answer_ip in body
        finally:
            fwd.stop()
