"""The zero-copy stream-from path (`zerocopy`): a peer's raw tar body read straight from the socket, member
data spliced into tar x. It must give the same volume as the tarfile path whatever the HTTP framing, keep
every stream-in rule (hostile entries refused naming the entry, nothing written outside, the size limit),
and turn a truncated or dropped body into an error with the volume as it was. The sending side's
`send_chunks` frames a pipe as HTTP/1.1 chunks."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airside.baggageclaim import streaming, tarpipe, zerocopy
from airside.baggageclaim.errors import BadStream, InvalidRequest, PeerError, StreamTooLarge

from .tarballs import chunks, entry, sparse_tar, tar_bytes
from .test_tarpipe import big_tree, snapshot

LIMIT = 1 << 30

pytestmark = pytest.mark.skipif(not (zerocopy.AVAILABLE and tarpipe.gnu_tar()),
                                reason="needs os.splice and GNU tar")


class FakePeer:
    """A volume server stand-in on 127.0.0.1: answers each request with `response` (raw bytes), then
    closes the connection, after `cut` bytes of it if set (with a reset if `reset`)."""

    def __init__(self) -> None:
        self.response, self.cut, self.reset = b"", None, False
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and (got := conn.recv(4096)):
                    head += got
                self.requests.append(head)
                out = self.response if self.cut is None else self.response[: self.cut]
                try:
                    conn.sendall(out)
                except OSError:
                    continue
                if self.reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def body(self, token: str = "t") -> zerocopy.PeerBody:
        return zerocopy.PeerBody(
            "127.0.0.1", self.port, "/api/v1/volumes/src/stream-out?path=&encoding=raw",
            {"Host": f"127.0.0.1:{self.port}", "Authorization": f"Bearer {token}"},
            what="streaming volume 'src' from the fake peer failed",
            fail=lambda status, body: PeerError(f"the fake peer answered {status}: {body.decode()}"))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer() -> Iterator[FakePeer]:
    p = FakePeer()
    yield p
    p.close()


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """body in HTTP/1.1 chunks of the given sizes (the last one repeated), then the last chunk."""
    out, pos, i = [], 0, 0
    while pos < len(body):
        n = sizes[min(i, len(sizes) - 1)]
        out.append(b"%x\r\n" % len(body[pos : pos + n]) + body[pos : pos + n] + b"\r\n")
        pos, i = pos + n, i + 1
    return b"".join(out) + b"0\r\n\r\n"


def response(body: bytes, framing: str, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/x-tar\r\n"
    if framing == "length":
        return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body
    if framing == "close":
        return (head + "connection: close\r\n\r\n").encode() + body
    sizes = {"chunked": [1 << 20], "chunked-odd": [1, 7, 511, 4099, 65537, 300_001]}[framing]
    return (head + "transfer-encoding: chunked\r\n\r\n").encode() + chunked(body, sizes)


def pull(peer: FakePeer, vol: Path, raw: bytes, framing: str = "chunked", **kw) -> int:
    peer.response = response(raw, framing)
    with peer.body() as body:
        n, _ = streaming.extract(body, vol, kw.pop("sub", ""), privileged=kw.pop("privileged", False),
                                 limit=kw.pop("limit", LIMIT), **kw)
    return n


def nothing_written(vol: Path) -> None:
    assert list(vol.iterdir()) == []
    assert list((vol.parent / "outside").iterdir()) == []


@pytest.mark.parametrize("framing", ["chunked", "chunked-odd", "length", "close"])
def test_a_tree_arrives_as_the_tarfile_path_writes_it(tmp_path: Path, peer: FakePeer, handovers: list,
                                                      framing: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big_tree(src)  # long names, a hard link, symlinks, a fifo, setuid bits, a UTF-8 name
    (src / "big").write_bytes(os.urandom(3 << 20))  # spliced across many chunks and pipe fills
    for i in range(50):
        (src / f"small{i}").write_bytes(os.urandom(i * 997))  # read with the next header, some exactly 0
    raw = subprocess.run(["tar", "--numeric-owner", "-C", str(src), "-cf", "-", "."], check=True,
                         capture_output=True).stdout
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    slow.mkdir()
    n = pull(peer, fast, raw, framing)
    m, _ = streaming.extract(chunks(raw, 65536), slow, "", privileged=False, limit=LIMIT, use_tar=False)
    assert n == m and handovers == []
    assert snapshot(fast) == snapshot(slow)
    assert (fast / "big").read_bytes() == (src / "big").read_bytes()
    assert b"Authorization: Bearer t" in peer.requests[0] and b"Connection: close" in peer.requests[0]


def test_members_that_tarpipe_does_not_handle_go_on_through_tarfile(tmp_path: Path, peer: FakePeer,
                                                                   handovers: list) -> None:
    src = tmp_path / "src"
    raw = sparse_tar(src, os.urandom(100_000))
    vol = tmp_path / "vol"
    vol.mkdir()
    assert pull(peer, vol, raw) == 3
    assert handovers  # the sparse member and what follows went through tarfile
    assert (vol / "before").read_bytes() == (src / "before").read_bytes()
    assert (vol / "sparse").read_bytes() == (src / "sparse").read_bytes()
    assert (vol / "z-after").read_text() == "a"


BIG = entry("first", data=os.urandom(200_000))  # spliced into tar before the hostile entry is read


@pytest.mark.parametrize(
    ("hostile", "named", "why"),
    [
        (entry("../escape", data=b"x"), "'../escape'", "traversal"),
        (entry("/etc/evil", data=b"x"), "'/etc/evil'", "absolute path"),
        (entry("d/" + "x" * 120 + "/../../../escape", data=b"x"), "/../../../escape", "traversal"),
        (entry("link", "symlink", link="../outside"), "'link'", "points outside"),
        (entry("abs", "symlink", link="/etc"), "'abs'", "absolute path"),
        (entry("hard", "hardlink", link="../outside/x"), "'hard'", "traversal"),
        (entry("dev", "chr"), "'dev'", "device node"),
    ],
)
def test_hostile_entries_are_refused_naming_the_entry(vol: Path, peer: FakePeer, handovers: list, hostile,
                                                      named: str, why: str) -> None:
    raw = tar_bytes([BIG, entry("d", "dir"), hostile, entry("after", data=b"never")])
    with pytest.raises(InvalidRequest) as e:
        pull(peer, vol, raw, "chunked-odd")
    assert named in e.value.message and why in e.value.message, e.value.message
    nothing_written(vol)  # the volume was empty: what tar wrote before the refusal is gone
    assert handovers == []


def test_a_symlink_then_a_file_through_it_is_refused(vol: Path, peer: FakePeer) -> None:
    raw = tar_bytes([BIG, entry("up", "symlink", link="."), entry("up/x", data=b"x")])
    with pytest.raises(InvalidRequest, match="'up/x'.*symlink"):
        pull(peer, vol, raw)
    nothing_written(vol)


def test_device_nodes_and_setuid_bits_only_in_privileged_volumes(tmp_path: Path, peer: FakePeer) -> None:
    raw = tar_bytes([BIG, entry("suid", data=b"#!/bin/sh\n", mode=0o4755)])
    plain, priv = tmp_path / "plain", tmp_path / "priv"
    plain.mkdir()
    priv.mkdir()
    pull(peer, plain, raw)
    pull(peer, priv, raw, privileged=True)
    assert (plain / "suid").stat().st_mode & 0o7777 == 0o755
    assert (priv / "suid").stat().st_mode & 0o7777 == 0o4755


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_a_body_past_the_limit_is_refused(vol: Path, peer: FakePeer, framing: str) -> None:
    raw = tar_bytes([entry("a", data=os.urandom(300_000)), entry("b", data=os.urandom(300_000))])
    with pytest.raises(StreamTooLarge) as e:
        pull(peer, vol, raw, framing, limit=400_000)
    assert "400000" in e.value.message and "'b'" in e.value.message
    assert e.value.status == 413
    nothing_written(vol)
    assert pull(peer, vol, raw, framing, limit=len(raw)) == 2  # exactly at the limit is fine


def test_a_body_cut_inside_a_member_is_a_bad_stream(vol: Path, peer: FakePeer) -> None:
    raw = tar_bytes([entry("a", data=os.urandom(100_000)), entry("b", data=os.urandom(100_000))])
    peer.cut = len(response(raw, "close")) - len(raw) + 150_000  # close-delimited: the end looks clean
    with pytest.raises(BadStream) as e:
        pull(peer, vol, raw, "close")
    assert "'b'" in e.value.message
    nothing_written(vol)


@pytest.mark.parametrize("reset", [False, True])
def test_a_connection_dropped_mid_file_is_a_peer_error(vol: Path, peer: FakePeer, reset: bool) -> None:
    raw = tar_bytes([entry("a", data=os.urandom(100_000)), entry("b", data=os.urandom(500_000))])
    peer.cut, peer.reset = len(response(raw, "chunked")) // 2, reset
    (vol / "keep").write_text("old")  # not empty before: the volume must be marked failed, not cleaned
    with pytest.raises(PeerError) as e:
        pull(peer, vol, raw, "chunked")
    assert e.value.status == 502 and "the fake peer failed" in e.value.message
    assert e.value.restored is False
    assert list((vol.parent / "outside").iterdir()) == []


def test_a_dropped_connection_into_an_empty_volume_leaves_it_empty(vol: Path, peer: FakePeer) -> None:
    raw = tar_bytes([entry(f"f{i}", data=os.urandom(50_000)) for i in range(20)])
    peer.cut = len(response(raw, "chunked")) * 2 // 3
    with pytest.raises(PeerError, match="connection closed before the end of the body"):
        pull(peer, vol, raw, "chunked")
    nothing_written(vol)


@pytest.mark.parametrize(
    ("resp", "match"),
    [
        (b"HTTP/1.1 404 Not Found\r\ncontent-length: 23\r\n\r\n{\"detail\": \"no volume\"}",
         "answered 404.*no volume"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", "transfer-encoding"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x response"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcdefgh\r\n0\r\n\r\n",
         "chunk data longer than its size"),
    ],
)
def test_a_broken_peer_answer_is_a_peer_error(vol: Path, peer: FakePeer, resp: bytes, match: str) -> None:
    peer.response = resp
    with pytest.raises(PeerError, match=match), peer.body() as body:
        streaming.extract(body, vol, "", privileged=False, limit=LIMIT)
    assert list(vol.iterdir()) == []


def test_an_unreachable_peer_is_a_peer_error(vol: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = zerocopy.PeerBody("127.0.0.1", port, "/x", {}, what="streaming volume 'src' from nowhere failed",
                             fail=lambda status, b: PeerError(str(status)))
    with pytest.raises(PeerError, match="from nowhere failed: ConnectionRefusedError"), body:
        streaming.extract(body, vol, "", privileged=False, limit=LIMIT)


def test_line_breaks_in_request_headers_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="Authorization"):
        zerocopy.PeerBody("127.0.0.1", 1, "/x", {"Authorization": "Bearer t\r\nX-Evil: 1"}, what="w",
                          fail=lambda status, b: PeerError(str(status)))


def decode_chunks(raw: bytes) -> tuple[bytes, bytes]:
    """The data of HTTP/1.1 chunks, and what follows the last complete one."""
    out, pos = [], 0
    while (end := raw.find(b"\r\n", pos)) >= 0 and raw[pos:end]:
        n = int(raw[pos:end], 16)
        out.append(raw[end + 2 : end + 2 + n])
        assert raw[end + 2 + n : end + 4 + n] == b"\r\n"
        pos = end + 4 + n
    return b"".join(out), raw[pos:]


def test_send_chunks_frames_everything_the_pipe_carries(tmp_path: Path) -> None:
    data = os.urandom(5 << 20)
    r, w = os.pipe()
    a, b = socket.socketpair()
    a.setblocking(False)  # like the event loop's socket
    received = bytearray()

    def reader() -> None:
        while got := b.recv(1 << 20):
            received.extend(got)

    def writer() -> None:
        with open(w, "wb", buffering=0) as f:
            for i in range(0, len(data), 10_240):
                f.write(data[i : i + 10_240])

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    assert zerocopy.send_chunks(r, a.fileno()) == len(data)
    a.shutdown(socket.SHUT_WR)
    for t in threads:
        t.join()
    os.close(r)
    a.close()
    b.close()
    got, rest = decode_chunks(bytes(received))
    assert got == data and rest == b""  # the last (empty) chunk is uvicorn's to write


def test_send_chunks_fails_when_the_client_goes_away() -> None:
    r, w = os.pipe()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    os.write(w, b"x" * 1000)
    os.close(w)
    with pytest.raises(OSError):
        zerocopy.send_chunks(r, a.fileno())
    os.close(r)
    a.close()


def test_a_plain_transport_socket_is_found_and_tls_is_not() -> None:
    class Transport:
        def __init__(self, **extra: object) -> None:
            self.extra = extra

        def get_extra_info(self, name: str) -> object:
            return self.extra.get(name)

    with socket.socket() as s:
        assert zerocopy.transport_socket(Transport(socket=s)) is s
        assert zerocopy.transport_socket(Transport(socket=s, ssl_object=object())) is None
    with socket.socket(type=socket.SOCK_DGRAM) as d:
        assert zerocopy.transport_socket(Transport(socket=d)) is None
    assert zerocopy.transport_socket(object()) is None


def test_a_tar_of_pax_headers_written_by_python_is_spliced_too(tmp_path: Path, peer: FakePeer,
                                                              handovers: list) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, size in [("ü" * 80, 70_000), ("d/" + "n" * 150, 1), ("e", 0)]:
            ti = tarfile.TarInfo(name)
            ti.size = size
            tf.addfile(ti, io.BytesIO(b"z" * size))
    vol = tmp_path / "vol"
    vol.mkdir()
    assert pull(peer, vol, buf.getvalue()) == 3 and handovers == []
    assert (vol / ("ü" * 80)).stat().st_size == 70_000 and (vol / "d" / ("n" * 150)).read_bytes() == b"z"
