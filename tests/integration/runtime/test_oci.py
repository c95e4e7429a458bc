"""OCI runtime specifics, with real runc: limits, OOM, user resolution, network, capabilities, state dir."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from airside.runtime import ContainerSpec, ExitStatus, Limits, RuntimeError_, get_runtime
from airside.runtime.oci import OCIRuntime

from .conftest import collect, needs_runc

pytestmark = [pytest.mark.root, needs_runc, pytest.mark.timeout(120)]


@pytest.fixture
def rt(state_dir: Path, destroy_all: list) -> OCIRuntime:
    r = get_runtime("oci", state_dir)
    assert isinstance(r, OCIRuntime) and r.isolates
    destroy_all.append(r)
    return r


def sh(rootfs: Path, handle: str, script: str, **kw) -> ContainerSpec:
    return ContainerSpec(handle=handle, rootfs=rootfs, path="sh", args=["-c", script], **kw)


def run(rt: OCIRuntime, spec: ContainerSpec) -> tuple[ExitStatus, dict[str, bytes]]:
    rt.prepare(spec)
    rt.start(spec.handle)
    out = collect(rt, spec.handle)
    return rt.wait(spec.handle), out


def test_memory_limit_kills_a_hog(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    spec = ContainerSpec(
        handle="hog", rootfs=busybox_rootfs, path="dd", args=["if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
        limits=Limits(memory_bytes=32 * 1024 * 1024),
    )  # fmt: skip
    status, _ = run(rt, spec)
    assert status.code == 137
    assert status.reason == "OOMKilled"


def test_limits_land_in_the_container_cgroup(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares"
    status, out = run(
        rt, sh(busybox_rootfs, "limits", script, limits=Limits(cpu_shares=512, memory_bytes=64 << 20))
    )
    assert status.code == 0
    assert out["stdout"].split() == [str(64 << 20).encode(), b"512"]


def test_user_by_uid_and_gid(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    status, out = run(rt, sh(busybox_rootfs, "uidgid", "id -u; id -g", user="1000:extra"))
    assert (status.code, out["stdout"].split()) == (0, [b"1000", b"2000"])


def test_named_user_gets_home_and_supplementary_groups(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    status, out = run(rt, sh(busybox_rootfs, "named", 'echo "$HOME"; id -G', user="user"))
    assert status.code == 0
    home, groups = out["stdout"].decode().splitlines()
    assert home == "/home/user" and set(groups.split()) == {"1000", "2000"}


def test_unknown_user_names_the_user_and_the_image(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    with pytest.raises(RuntimeError_, match=r"user 'ghost'.*image 'test/busybox'"):
        rt.prepare(sh(busybox_rootfs, "ghost", "true", user="ghost", image="test/busybox"))
    assert rt.status("ghost") == "missing"


def test_network_is_loopback_only_by_default(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    status, out = run(
        rt, sh(busybox_rootfs, "net", "cat /proc/net/dev; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok")
    )
    assert status.code == 0
    ifaces = [line.split(":")[0].strip() for line in out["stdout"].decode().splitlines() if ":" in line]
    assert ifaces == ["lo"]
    assert b"ping-ok" in out["stdout"]


def test_host_network_option_shares_the_hosts_interfaces(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    host_ifaces = {
        line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines() if ":" in line
    }
    status, out = run(rt, sh(busybox_rootfs, "hostnet", "cat /proc/net/dev", network="host"))
    ifaces = {line.split(":")[0].strip() for line in out["stdout"].decode().splitlines() if ":" in line}
    assert status.code == 0 and ifaces == host_ifaces


def _capeff(out: bytes) -> int:
    line = next(line for line in out.decode().splitlines() if line.startswith("CapEff:"))
    return int(line.split()[1], 16)


def test_capabilities_default_and_privileged(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    _, plain = run(rt, sh(busybox_rootfs, "caps", "grep Cap /proc/self/status"))
    _, priv = run(rt, sh(busybox_rootfs, "privcaps", "grep Cap /proc/self/status", privileged=True))
    bnd = int(
        next(
            ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapBnd:")
        ).split()[1],
        16,
    )
    assert _capeff(plain["stdout"]) == 0xA80425FB  # Docker's default set
    assert _capeff(priv["stdout"]) == bnd  # everything this host grants, nothing it does not


def test_non_root_user_has_no_effective_capabilities(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    _, out = run(rt, sh(busybox_rootfs, "usercaps", "grep Cap /proc/self/status", user="user"))
    assert _capeff(out["stdout"]) == 0


def test_rootfs_is_writable_and_hosts_resolve(rt: OCIRuntime, fresh_rootfs: Path) -> None:
    status, out = run(rt, sh(fresh_rootfs, "write", "echo x > /etc/written && cat /etc/hosts && hostname"))
    assert status.code == 0
    assert (fresh_rootfs / "etc/written").read_text() == "x\n"
    assert b"localhost" in out["stdout"] and out["stdout"].strip().endswith(b"write")


def test_sigterm_reaches_a_task_that_traps_it(rt: OCIRuntime, busybox_rootfs: Path) -> None:
    # the task is PID 1 in its namespace: only signals it handles (or SIGKILL) do anything
    rt.prepare(sh(busybox_rootfs, "graceful", 'trap "echo bye; exit 5" TERM; echo ready; sleep 600 & wait'))
    rt.start("graceful")
    logs = rt.logs("graceful")
    assert next(logs).data == b"ready\n"
    rt.signal("graceful", 15)
    assert rt.wait("graceful") == ExitStatus(5, "")
    assert b"".join(c.data for c in logs) == b"bye\n"


def test_runc_state_and_bundle_live_in_the_state_dir_and_go_with_destroy(
    rt: OCIRuntime, busybox_rootfs: Path, state_dir: Path
) -> None:
    rt.prepare(sh(busybox_rootfs, "layout", "echo ready; exec sleep 600"))
    config = json.loads((state_dir / "layout/bundle/config.json").read_text())
    assert config["root"] == {"path": str(busybox_rootfs), "readonly": False}
    rt.start("layout")
    assert next(rt.logs("layout")).data == b"ready\n"
    listed = subprocess.run(
        ["runc", "--root", str(state_dir / ".runc"), "list", "-q"], capture_output=True, text=True
    )
    assert listed.stdout.split() == ["layout"]
    rt.destroy("layout")
    listed = subprocess.run(
        ["runc", "--root", str(state_dir / ".runc"), "list", "-q"], capture_output=True, text=True
    )
    assert listed.stdout.split() == [] and not (state_dir / "layout").exists()


def test_missing_dir_is_created_for_the_tasks_user(rt: OCIRuntime, fresh_rootfs: Path) -> None:
    status, out = run(
        rt, sh(fresh_rootfs, "userdir", "touch mine && pwd && stat -c %u .", user="user", dir="/work/sub")
    )
    assert status.code == 0, out
    assert out["stdout"].split() == [b"/work/sub", b"1000"]
