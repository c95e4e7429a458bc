"""The volume server over HTTP (root, overlay on tmpfs): auth, the volume verbs, streams between two
servers, hostile uploads answered with a 4xx naming the entry, restart persistence, TTL expiry, CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import zstandard
from click.testing import CliRunner

from airside.baggageclaim import routes
from airside.baggageclaim.client import VolumeClient, VolumeClientError
from airside.cli import main
from tests.unit.baggageclaim.tarballs import entry, tar_bytes

from .conftest import TOKEN

pytestmark = pytest.mark.root


@pytest.fixture
def server(server_factory, tmpfs: Path):
    return server_factory(tmpfs / "a", "overlay", baggageclaim_stream_max_bytes=1 << 20)


@pytest.fixture
def vc(server):
    with VolumeClient(server.url, TOKEN) as c:
        yield c


def test_every_route_but_healthz_needs_the_token(server) -> None:
    assert httpx.get(server.url + "/healthz").status_code == 200
    for name, r in routes.ROUTES.items():
        resp = httpx.request(r.method, server.url + r.url(handle="h", name="n"),
                             headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 401, name
    with pytest.raises(VolumeClientError) as e:
        VolumeClient(server.url, "wrong").list()
    assert e.value.status == 401 and "baggageclaim_token" in e.value.message


def test_create_list_get_properties_ttl_size_destroy(vc: VolumeClient) -> None:
    p = vc.create("p", properties={"kind": "input"}, ttl=600)
    assert p.expires_at is not None and vc.info()["driver"] == "overlay"
    c = vc.create("c", strategy="cow", parent="p", properties={"kind": "output"})
    vc.set_property("c", "build", "7")
    assert [v.handle for v in vc.list(kind="output", build="7")] == ["c"]
    assert vc.set_ttl("p", 0).expires_at is None
    Path(c.path, "f").write_text("12345")
    assert vc.size("c") == 5 and vc.get("c").parent == "p"
    with pytest.raises(VolumeClientError) as e:
        vc.destroy("p")
    assert e.value.status == 409 and "'p' has children (c)" in e.value.message
    with pytest.raises(VolumeClientError) as e:
        vc.create("x", strategy="cow", parent="missing")
    assert e.value.status == 404 and "'missing'" in e.value.message
    with pytest.raises(VolumeClientError) as e:
        vc.create("bad handle/")
    assert e.value.status == 422 and "handle" in e.value.message
    assert vc.destroy("p", cascade=True) == ["c", "p"]
    assert vc.list() == [] and vc.destroy("p") == []


def test_stream_round_trip_keeps_permissions_owners_and_links(vc: VolumeClient, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "bin" / "tool", 0o751)
    os.chown(src / "bin" / "tool", 1000, 2000)
    os.link(src / "bin" / "tool", src / "bin" / "tool2")
    os.symlink("bin/tool", src / "current")
    vc.create("v")
    assert vc.put_dir("v", src, path="in") >= 4
    vc.get_dir("v", tmp_path / "out", path="in")
    out = tmp_path / "out"
    st = os.stat(out / "bin" / "tool")
    assert stat.S_IMODE(st.st_mode) == 0o751 and (st.st_uid, st.st_gid) == (1000, 2000)
    assert os.readlink(out / "current") == "bin/tool" and st.st_ino == os.stat(out / "bin" / "tool2").st_ino
    zst = zstandard.ZstdDecompressor().stream_reader(iter_file(vc.stream_out("v", path="in/bin", encoding="zstd")))
    listing = subprocess.run(["tar", "tv"], input=zst.read(), capture_output=True).stdout
    assert b"./tool" in listing
    one = b"".join(vc.stream_out("v", path="in/bin/tool"))  # a file: a tar of that one file
    assert b"echo hi" in one
    with pytest.raises(VolumeClientError) as e:  # never follows a symlink out of the volume
        b"".join(vc.stream_out("v", path="in/current"))
    assert e.value.status == 422 and "in/current is a symlink" in e.value.message


class iter_file:  # noqa: N801 - a tiny file-like over chunks for zstandard
    def __init__(self, chunks) -> None:
        self.chunks, self.buf = iter(chunks), b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            nxt = next(self.chunks, None)
            if nxt is None:
                break
            self.buf += nxt
        out, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        return out


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ([entry("../../etc/airside-pwned", data=b"x")], "../../etc/airside-pwned"),
        ([entry("/etc/airside-pwned", data=b"x")], "/etc/airside-pwned"),
        ([entry("l", "symlink", link="../../../../etc"), entry("l/airside-pwned", data=b"x")], "l"),
        ([entry("h", "hardlink", link="/etc/passwd")], "h"),
        ([entry("null", "chr")], "null"),
    ],
)
def test_hostile_uploads_get_a_4xx_naming_the_entry_and_write_nothing(vc: VolumeClient, entries, named) -> None:
    vc.create("v")
    with pytest.raises(VolumeClientError) as e:
        vc.stream_in("v", tar_bytes(entries))
    assert e.value.status == 422 and repr(named) in e.value.message
    assert not Path("/etc/airside-pwned").exists()
    assert list(Path(vc.get("v").path).iterdir()) == [] and vc.get("v").state == "ready"


def test_privileged_volumes_may_hold_device_nodes(vc: VolumeClient) -> None:
    vc.create("dev", privileged=True)
    vc.stream_in("dev", tar_bytes([entry("null", "chr")]))
    assert stat.S_ISCHR(os.lstat(Path(vc.get("dev").path) / "null").st_mode)


def test_bodies_past_the_limit_are_refused_with_413(vc: VolumeClient) -> None:
    vc.create("v")
    big = tar_bytes([entry("small", data=b"s"), entry("huge", data=os.urandom(2 << 20))])
    with pytest.raises(VolumeClientError) as e:
        vc.stream_in("v", iter([big[i : i + 65536] for i in range(0, len(big), 65536)]))
    assert e.value.status == 413 and "'huge'" in e.value.message
    assert list(Path(vc.get("v").path).iterdir()) == []


def test_import_makes_a_volume_only_from_a_good_stream(vc: VolumeClient) -> None:
    raw = tar_bytes([entry("a", data=b"1")])
    v = vc.import_tar(zstandard.ZstdCompressor().compress(raw), "imp", encoding="zstd", properties={"k": "v"})
    assert v.strategy == "import" and Path(v.path, "a").read_text() == "1" and v.properties == {"k": "v"}
    with pytest.raises(VolumeClientError) as e:
        vc.import_tar(raw[:700], "broken")
    assert e.value.status == 400 and "'a'" in e.value.message
    assert [x.handle for x in vc.list()] == ["imp"]


def test_stream_from_another_server(server, server_factory, tmpfs: Path, vc: VolumeClient) -> None:
    other = server_factory(tmpfs / "b", "naive")
    with VolumeClient(other.url, TOKEN) as oc:
        src = vc.create("src")
        Path(src.path, "dir").mkdir()
        Path(src.path, "dir", "f").write_text("payload")
        oc.create("dst")
        assert oc.stream_from("dst", url=server.url, source="src", path="dir", dest_path="got", encoding="zstd") == 2
        assert Path(oc.get("dst").path, "got", "f").read_text() == "payload"
        with pytest.raises(VolumeClientError) as e:
            oc.stream_from("dst", url=server.url, source="nope")
        assert e.value.status == 502 and "'nope'" in e.value.message and "404" in e.value.message


def test_volumes_survive_a_server_restart_and_expire(server_factory, tmpfs: Path) -> None:
    first = server_factory(tmpfs / "r", "detect")
    with VolumeClient(first.url, TOKEN) as c:
        c.create("p")
        Path(c.create("c", strategy="cow", parent="p").path, "f").write_text("kept")
        c.create("short", ttl=0.5)
    first.stop()
    second = server_factory(tmpfs / "r", "detect", baggageclaim_sweep_interval=0.2)
    with VolumeClient(second.url, TOKEN) as c:
        assert Path(c.get("c").path, "f").read_text() == "kept" and c.info()["driver"] == "overlay"
        deadline = time.monotonic() + 20
        while any(v.handle == "short" for v in c.list()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(v.handle for v in c.list()) == ["c", "p"]


def test_volumes_command_lists_with_filters(server, vc: VolumeClient) -> None:
    vc.create("a", properties={"team": "x"})
    vc.create("b", properties={"team": "y"})
    res = CliRunner().invoke(main, ["volumes", "--baggageclaim-url", server.url, "--baggageclaim-token", TOKEN,
                                    "--json", "-p", "team=y"])
    assert res.exit_code == 0, res.output
    assert [v["handle"] for v in json.loads(res.output)] == ["b"]
    res = CliRunner().invoke(main, ["volumes", "--baggageclaim-url", server.url, "--baggageclaim-token", "bad"])
    assert res.exit_code == 1
