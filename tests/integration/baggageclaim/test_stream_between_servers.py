"""Stream-from between two volume servers on the fast path (the sender splices tar's output into its socket,
the receiver splices member data from its socket into GNU tar x): a tree with long names, hard links and a
big file arrives whole; a peer's refusals and an unreachable peer are a 502 naming the volume; a hostile
peer stream is refused like an upload; a dropped connection or a body past the limit leaves the volume as
it was (or marks it failed when it held something)."""

from __future__ import annotations

import io
import os
import socket
import tarfile
from pathlib import Path

import pytest

from airside.baggageclaim.client import VolumeClient, VolumeClientError
from tests.unit.baggageclaim.tarballs import entry, tar_bytes
from tests.unit.baggageclaim.test_zerocopy import FakePeer, response

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


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each side took the zero-copy path (the servers run in this process)."""
    from airside.baggageclaim import peer, zerocopy

    seen = {"send_chunks": 0, "peer_body": 0}
    real_send, real_body = zerocopy.send_chunks, peer.peer_body

    def send(*a: object) -> int:
        seen["send_chunks"] += 1
        return real_send(*a)  # type: ignore[arg-type]

    def body(*a: object) -> object:
        got = real_body(*a)  # type: ignore[arg-type]
        seen["peer_body"] += got is not None
        return got

    monkeypatch.setattr(zerocopy, "send_chunks", send)
    monkeypatch.setattr(peer, "peer_body", body)
    return seen


def test_both_sides_take_the_zero_copy_path_and_a_plain_client_reads_it(server_factory, tmpfs: Path,
                                                                        spies: dict) -> None:
    a, b = server_factory(tmpfs / "a", "naive"), server_factory(tmpfs / "b", "naive")
    with VolumeClient(a.url, TOKEN) as ac, VolumeClient(b.url, TOKEN) as bc:
        src = Path(ac.create("src").path)
        files = {f"d{i % 7}/f{i}": os.urandom(i * 1499) for i in range(200)}
        for name, data in files.items():
            (src / name).parent.mkdir(exist_ok=True)
            (src / name).write_bytes(data)
        bc.create("dst")
        assert bc.stream_from("dst", url=a.url, source="src") == 1 + 7 + 200
        assert spies == {"send_chunks": 1, "peer_body": 1}
        dst = Path(bc.get("dst").path)
        assert all((dst / n).read_bytes() == d for n, d in files.items())
        # an ordinary HTTP/1.1 client (httpx) reads the spliced chunks as any other body
        raw = b"".join(ac.stream_out("src", path="d3"))
        assert spies["send_chunks"] == 2
        assert ac.get("src").handle == "src"  # the kept-alive connection carries on after the spliced body
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            got = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}  # type: ignore[union-attr]
        assert got == {f"./{n[3:]}": d for n, d in files.items() if n.startswith("d3/")}
        # compressed streams keep the copying path on both sides
        bc.create("z")
        assert bc.stream_from("z", url=a.url, source="src", encoding="zstd") == 208
        assert spies == {"send_chunks": 2, "peer_body": 1}


def test_a_hostile_peer_body_is_refused_on_the_zero_copy_path(server_factory, tmpfs: Path,
                                                              spies: dict) -> None:
    b = server_factory(tmpfs / "b", "naive")
    peer = FakePeer()
    try:
        with VolumeClient(b.url, TOKEN) as bc:
            bc.create("dst")
            dst = Path(bc.get("dst").path)
            for hostile, named in [(entry("../../../../escape", data=b"x"), "'../../../../escape'"),
                                   (entry("ln", "symlink", link="../../.."), "'ln'")]:
                raw = tar_bytes([entry("big", data=os.urandom(2 << 20)), hostile, entry("late", data=b"x")])
                peer.response = response(raw, "chunked-odd")
                with pytest.raises(VolumeClientError) as e:
                    bc.stream_from("dst", url=f"http://127.0.0.1:{peer.port}", source="src")
                assert e.value.status == 422 and named in e.value.message
                assert list(dst.iterdir()) == [] and bc.get("dst").state == "ready"
            assert not (tmpfs / "escape").exists() and spies["peer_body"] == 2
    finally:
        peer.close()


def test_a_peer_dropping_mid_file_or_past_the_limit_leaves_the_volume_as_it_was(server_factory, tmpfs: Path,
                                                                              spies: dict) -> None:
    b = server_factory(tmpfs / "b", "naive", baggageclaim_stream_max_bytes=1 << 20)
    peer = FakePeer()
    try:
        with VolumeClient(b.url, TOKEN) as bc:
            bc.create("dst")
            dst = Path(bc.get("dst").path)
            url = f"http://127.0.0.1:{peer.port}"
            raw = tar_bytes([entry("a", data=os.urandom(300_000)), entry("b", data=os.urandom(600_000))])
            peer.response, peer.cut = response(raw, "chunked"), 500_000
            with pytest.raises(VolumeClientError) as e:
                bc.stream_from("dst", url=url, source="src")
            assert e.value.status == 502 and "connection closed before the end of the body" in e.value.message
            assert list(dst.iterdir()) == [] and bc.get("dst").state == "ready"

            peer.cut = None
            more = tar_bytes([entry("a", data=os.urandom(300_000)), entry("b", data=os.urandom(600_000)),
                              entry("c", data=os.urandom(600_000))])
            peer.response = response(more, "chunked")
            with pytest.raises(VolumeClientError) as e:
                bc.stream_from("dst", url=url, source="src")
            assert e.value.status == 413 and "limit" in e.value.message and "'c'" in e.value.message
            assert list(dst.iterdir()) == [] and bc.get("dst").state == "ready"

            (dst / "keep").write_text("old")  # into a volume with content: it is marked failed instead
            peer.response, peer.cut = response(raw, "chunked"), 500_000
            with pytest.raises(VolumeClientError) as e:
                bc.stream_from("dst", url=url, source="src")
            assert e.value.status == 502 and bc.get("dst").state == "failed"
            assert spies["peer_body"] == 3
    finally:
        peer.close()


@pytest.mark.timeout(120)
def test_stalled_stream_out_clients_do_not_starve_the_server(server_factory, tmpfs: Path, spies: dict) -> None:
    """Each spliced stream-out has a thread of its own: clients that stop reading must not use up the
    threads that stream-ins (here, and on a peer streaming the other way) need."""
    import httpx

    from airside.baggageclaim import routes

    a = server_factory(tmpfs / "a", "naive")
    stalled: list[tuple[httpx.Client, httpx.Response]] = []
    with VolumeClient(a.url, TOKEN) as ac:
        (Path(ac.create("big").path) / "f").write_bytes(os.urandom(8 << 20))
        try:
            for _ in range(10):  # more than the default executor's threads on a small machine
                c = httpx.Client(base_url=a.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
                r = c.send(c.build_request("GET", routes.STREAM_OUT.url(handle="big")), stream=True)
                assert r.status_code == 200
                stalled.append((c, r))
            ac.create("other")
            assert ac.stream_in("other", tar_bytes([entry("x", data=b"y")])) == 1
            assert spies["send_chunks"] == 10
        finally:
            for c, r in stalled:
                r.close()
                c.close()
