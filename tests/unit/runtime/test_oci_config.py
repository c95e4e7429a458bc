"""The pure parts of the OCI runtime: config building, user resolution, capability filtering."""

from __future__ import annotations

from pathlib import Path

import pytest

from airside.runtime import ContainerSpec, Limits, Mount, RuntimeError_
from airside.runtime.oci import DEFAULT_CAPS, bounding_caps, build_config, resolve_user
from tests.rootfs import GROUP, PASSWD


@pytest.fixture
def etc_root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text(GROUP)
    return tmp_path


def spec(**kw) -> ContainerSpec:
    base = dict(handle="h1", rootfs=Path("/r"), path="/bin/sh", args=["-c", "true"])
    base.update(kw)
    return ContainerSpec(**base)


ALL = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE",
       "NET_RAW", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SYS_ADMIN"]  # fmt: skip


def test_config_carries_the_task() -> None:
    c = build_config(
        spec(env={"A": "1", "PATH": "/custom"}, dir="/tmp/build/x", mounts=[Mount(Path("/v/in"), "/tmp/build/in", True), Mount(Path("/v/out"), "/tmp/build/out")],
             limits=Limits(cpu_shares=256, memory_bytes=1 << 30)),
        0, 0, [], "/root", ALL, "/airside/k.h1",
    )  # fmt: skip
    p = c["process"]
    assert p["args"] == ["/bin/sh", "-c", "true"] and p["cwd"] == "/tmp/build/x"
    assert "A=1" in p["env"] and "PATH=/custom" in p["env"] and "HOME=/root" in p["env"]
    assert p["noNewPrivileges"] is True
    binds = {m["destination"]: m for m in c["mounts"] if m["type"] == "bind"}
    assert "ro" in binds["/tmp/build/in"]["options"] and "rw" in binds["/tmp/build/out"]["options"]
    assert all("rbind" in m["options"] for m in binds.values())
    assert {m["destination"] for m in c["mounts"]} >= {"/proc", "/dev", "/sys", "/dev/shm", "/dev/pts"}
    assert c["linux"]["resources"]["memory"] == {"limit": 1 << 30, "swap": 1 << 30}
    assert c["linux"]["resources"]["cpu"] == {"shares": 256}
    assert {n["type"] for n in c["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert c["root"] == {"path": "/r", "readonly": False}
    assert c["linux"]["cgroupsPath"] == "/airside/k.h1"


def test_default_path_when_params_do_not_set_one() -> None:
    c = build_config(spec(), 0, 0, [], "/", ALL, "/x")
    assert any(e.startswith("PATH=") and "/bin" in e for e in c["process"]["env"])


def test_caps_default_set_privileged_and_bounding_filter() -> None:
    bound = [c for c in ALL if c != "SYS_ADMIN" and c != "MKNOD"]
    c = build_config(spec(), 0, 0, [], "/", bound, "/x")
    caps = c["process"]["capabilities"]
    assert set(caps["bounding"]) == {f"CAP_{n}" for n in DEFAULT_CAPS if n in bound}
    assert "CAP_MKNOD" not in caps["bounding"]
    pc = build_config(spec(privileged=True), 0, 0, [], "/", bound, "/x")
    assert set(pc["process"]["capabilities"]["bounding"]) == {f"CAP_{n}" for n in bound}
    assert pc["process"]["noNewPrivileges"] is False and "maskedPaths" not in pc["linux"]
    assert pc["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    user = build_config(spec(), 1000, 1000, [], "/", bound, "/x")
    assert user["process"]["capabilities"]["effective"] == []


def test_host_network_drops_the_network_namespace() -> None:
    c = build_config(spec(network="host"), 0, 0, [], "/", ALL, "/x")
    assert "network" not in {n["type"] for n in c["linux"]["namespaces"]}


def test_bounding_caps_reads_capbnd(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t000001fffeffffff\n")
    caps = bounding_caps(str(status))
    assert "SYS_RESOURCE" not in caps and "SYS_ADMIN" in caps and "CHECKPOINT_RESTORE" in caps


@pytest.mark.parametrize(
    "user, expected",
    [
        (None, (0, 0, [], "/root")),
        ("root", (0, 0, [], "/root")),
        ("user", (1000, 1000, [2000], "/home/user")),
        ("1000", (1000, 1000, [2000], "/home/user")),
        ("1000:2000", (1000, 2000, [], "/home/user")),
        ("user:extra", (1000, 2000, [], "/home/user")),
        ("4242", (4242, 0, [], "/")),
    ],
)
def test_resolve_user(etc_root: Path, user, expected) -> None:
    assert resolve_user(etc_root, user) == expected


def test_unknown_user_and_group(etc_root: Path) -> None:
    with pytest.raises(RuntimeError_, match=r"user 'ghost' is not in /etc/passwd of image 'alpine:3'"):
        resolve_user(etc_root, "ghost", "alpine:3")
    with pytest.raises(RuntimeError_, match=r"group 'nogrp'"):
        resolve_user(etc_root, "user:nogrp")


def test_passwd_symlink_out_of_the_rootfs_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").symlink_to("/etc/passwd")
    with pytest.raises(RuntimeError_, match="user 'root'"):
        resolve_user(tmp_path, "root")
