"""Stream-from between two volume servers on the fast path (plain http peer read with http.client, GNU
tar x writing): a tree with long names, hard links and a big file arrives whole; a peer's refusals and an
unreachable peer are a 502 naming the volume; a hostile peer stream is refused like an upload."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from airside.baggageclaim.client import VolumeClient, VolumeClientError
from tests.unit.baggageclaim.tarballs import entry, tar_bytes

from .conftest import TOKEN

pytestmark = pytest.mark.root


def test_a_tree_streams_whole_between_servers(server_factory, tmpfs: Path) -> None:
    a, b = server_factory(tmpfs / "a", "naive"), server_factory(tmpfs / "b", "naive")
    with VolumeClient(a.url, TOKEN) as ac, VolumeClient(b.url, TOKEN) as bc:
        src = Path(ac.create("src").path)
        deep = src / ("d" * 120) / ("e" * 120)
        deep.mkdir(parents=True)
        payload = os.urandom(3 << 20)
        (deep / "big").write_bytes(payload)
        os.link(deep / "big", src / "hard")
        os.symlink(f"{'d' * 120}/{'e' * 120}/big", src / "link")
        for i in range(300):
            (src / f"small{i}").write_text(str(i))
        bc.create("dst")
        assert bc.stream_from("dst", url=a.url, source="src") == 306  # ".", 2 dirs, big, hard, link, 300
        dst = Path(bc.get("dst").path)
        got = dst / ("d" * 120) / ("e" * 120) / "big"
        assert got.read_bytes() == payload
        assert os.stat(dst / "hard").st_ino == os.stat(got).st_ino
        assert os.readlink(dst / "link") == f"{'d' * 120}/{'e' * 120}/big"
        assert (dst / "small299").read_text() == "299"


def test_hostile_peer_streams_and_unreachable_peers(server_factory, tmpfs: Path) -> None:
    a, b = server_factory(tmpfs / "a", "naive"), server_factory(tmpfs / "b", "naive")
    with VolumeClient(a.url, TOKEN) as ac, VolumeClient(b.url, TOKEN) as bc:
        ac.create("evil")
        bc.create("dst")
        # a peer volume holding an absolute symlink (a privileged rootfs, say) is refused in a plain volume
        ac.create("rootfs", privileged=True)
        ac.stream_in("rootfs", tar_bytes([entry("bin", "symlink", link="/usr/bin")]))
        with pytest.raises(VolumeClientError) as e:
            bc.stream_from("dst", url=a.url, source="rootfs")
        assert e.value.status == 422 and "/bin'" in e.value.message and "absolute path" in e.value.message
        assert list(Path(bc.get("dst").path).iterdir()) == []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(VolumeClientError) as e:
            bc.stream_from("dst", url=f"http://127.0.0.1:{port}", source="evil")
        assert e.value.status == 502 and "'evil'" in e.value.message
        with pytest.raises(VolumeClientError) as e:
            bc.stream_from("dst", url=a.url, source="evil", token="wrong")
        assert e.value.status == 502 and "401" in e.value.message
