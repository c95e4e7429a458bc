"""Container networking through a real worker: its settings reach the runtime, and faults end builds errored.

Real `airside web` (SQLite) and `airside worker` (oci, bridge network) processes, `airside execute`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from airside.runtime.net import BridgeNetwork, NetworkConfig, netns
from airside.runtime.net.bridge import conflists
from airside.runtime.net.cni import Chain
from tests.netenv import Peer
from tests.procs import WebProc, WorkerProc, cli_env, run_cli, state_of, wait_for
from tests.rootfs import busybox_path

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
                       reason="needs root, runc and busybox-static"),
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(),
                       reason="needs CNI plugins (apt-get install containernetworking-plugins)"),
]


POOL, EXHAUSTED = "10.125.0.0/24", "10.125.1.0/30"


@pytest.fixture
def image(busybox_image: Path) -> Path:
    return busybox_image


def task(tmp_path: Path, image: Path, script: str) -> Path:
    p = tmp_path / "task.yml"
    p.write_text(textwrap.dedent(f"""
        platform: linux
        rootfs_uri: {image}
        run: {{path: sh, args: [-c, {json.dumps(script)}]}}
    """))
    return p


@pytest.fixture(autouse=True)
def clear_pools() -> Iterator[None]:
    """The pools these tests use leave no bridge or firewall rule behind (the next run starts from nothing)."""
    yield
    for pool in (POOL, EXHAUSTED):
        BridgeNetwork(NetworkConfig(pool=pool), prefix="test").remove()


def start_worker(tmp_path: Path, web: WebProc, **settings: object) -> WorkerProc:
    wk = WorkerProc(tmp_path, web, "w1", worker_runtime="oci", **settings).start()
    wait_for(lambda: state_of(web.client(), "w1") == "running", timeout=30,
             what=f"worker running\n{wk.output()[-2000:]}")
    return wk


def test_a_task_reaches_a_server_by_name_with_the_workers_dns_setting(
    tmp_path: Path, web: WebProc, image: Path
) -> None:
    with Peer("wk", 21) as peer:
        peer.serve_file(tmp_path, "greeting", "hello, task", 8080)
        peer.serve_dns({"greeter.airside.test": peer.addr}, tmp_path / "dns.log")
        wk = start_worker(tmp_path, web, dns_servers=peer.addr, network_pool=POOL)
        try:
            r = run_cli(web, "execute", "-c", str(task(tmp_path, image, (
                "ip -4 -o addr show eth0; wget -q -O- http://greeter.airside.test:8080/greeting"))))
            assert r.returncode == 0, r.stdout + r.stderr
            assert "hello, task" in r.stdout
            assert "inet 10.125.0." in r.stdout
        finally:
            wk.stop()


def test_container_network_loopback_has_no_route_out(tmp_path: Path, web: WebProc, image: Path) -> None:
    wk = start_worker(tmp_path, web, container_network="loopback")
    try:
        r = run_cli(web, "execute", "-c", str(task(tmp_path, image, "ip -o link; ip route; echo routes-listed")))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "routes-listed" in r.stdout and "eth0" not in r.stdout and "default" not in r.stdout
    finally:
        wk.stop()


def test_an_exhausted_pool_errors_the_build_with_the_reason(tmp_path: Path, web: WebProc, image: Path) -> None:
    pool = EXHAUSTED  # one container address (.2); the test takes it first
    cfg = NetworkConfig(pool=pool)
    bridge, _ = conflists(cfg)
    squatter = Chain(bridge, cfg.plugin_dirs, cfg.cni_dir / "results")
    ns = tmp_path / "squatter-ns"
    netns.create(ns)
    squatter.add("airside-test-squatter", str(ns))
    wk = start_worker(tmp_path, web, network_pool=pool)
    try:
        r = run_cli(web, "execute", "-c", str(task(tmp_path, image, "echo never")))
        assert r.returncode != 0 and "never" not in r.stdout
        b = web.client().builds()[0]
        assert b.status == "errored", b
        assert "no IP addresses available" in (b.reason or ""), b.reason
    finally:
        wk.stop()
        squatter.delete("airside-test-squatter", str(ns))
        netns.remove(ns)


@pytest.mark.parametrize(("setting", "value"), [
    ("network_pool", "10.0.0.1/8"),
    ("network_pool", "fd00::/64"),
    ("restricted_networks", "169.254.169.254/32,not-a-cidr"),
    ("dns_servers", "127.0.0.53"),
])
def test_an_invalid_network_setting_is_refused_at_start_naming_it(
    tmp_path: Path, web: WebProc, setting: str, value: str
) -> None:
    env = cli_env({"web_url": web.url, "worker_token": web.WORKER_TOKEN, "data_dir": tmp_path / "wk",
                   "worker_runtime": "oci", setting: value})
    r = subprocess.run([sys.executable, "-m", "airside.cli", "worker"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert setting in r.stderr + r.stdout, r.stderr
    assert web.client().workers() == []  # it never registered
