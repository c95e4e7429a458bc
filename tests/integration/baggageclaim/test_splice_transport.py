"""What the stream-out splice leans on beyond public API (`airside.baggageclaim.splice`), against the
installed uvicorn, for both its HTTP protocols and both event loops: uvicorn hands the app ``send``
bound to its per-request cycle, whose ``transport`` is the connection's (`connection_transport`); a
response head saying ``transfer-encoding: chunked`` is framed by uvicorn, which writes the last chunk
and nothing in between, so a plain HTTP/1.1 client reads the spliced body and the kept-alive
connection carries on. And when the lookup finds nothing, stream-out copies and is still right."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from airside.baggageclaim import splice, zerocopy
from airside.baggageclaim.schemas import VolumeSpec
from airside.baggageclaim.server import create_app

from .conftest import TOKEN, settings_for

PROTOCOLS = [(protocol, loop) for protocol in ("h11", "httptools") for loop in ("asyncio", "uvloop")]


@contextlib.contextmanager
def uvicorn_serving(app: ASGIApp, protocol: str, loop: str) -> Iterator[tuple[str, int]]:
    """uvicorn serving app on a loopback socket that listens before uvicorn starts (clients may connect
    at once: the kernel queues them until uvicorn accepts)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, loop=loop, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.mark.parametrize(("protocol", "loop"), PROTOCOLS)
def test_uvicorn_hands_the_app_the_connection_transport(protocol: str, loop: str) -> None:
    seen: dict[str, object] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        transport = scope.get(splice.TRANSPORT)
        sock = zerocopy.transport_socket(transport)
        seen["transport"] = transport
        seen["peer"] = sock.getpeername() if sock is not None else None
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with uvicorn_serving(splice.with_transport(app), protocol, loop) as addr:
        conn = HTTPConnection(*addr, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        client = conn.sock.getsockname()
        conn.close()
    assert seen["transport"] is not None, (
        f"uvicorn {uvicorn.__version__} (http={protocol}, loop={loop}) no longer calls the app with `send` bound to "
        "a RequestResponseCycle that has the connection's transport as `.transport` (send.__self__.transport): "
        "splice.connection_transport finds nothing, so every raw stream-out takes the copying path. Find the "
        "connection's transport in this uvicorn and update connection_transport.")
    assert seen["peer"] == client, "the socket under the transport found is not this request's connection"


@pytest.fixture
def spliced_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = zerocopy.send_chunks

    def send_chunks(src: int, sock: int) -> int:
        calls.append(src)
        return real(src, sock)

    monkeypatch.setattr(zerocopy, "send_chunks", send_chunks)
    return calls


def volume_server(tmp_path: Path) -> tuple[ASGIApp, dict[str, bytes]]:
    """The volume server's app (naive driver) with volume "src" holding files; and the files."""
    app = create_app(settings_for(tmp_path / "volumes", "naive"))
    src = Path(app.state.repository.create(VolumeSpec(handle="src")).path)
    files = {f"d{i % 3}/f{i}": os.urandom(i * 7919) for i in range(40)}  # up to ~300 KiB: several chunks
    for name, data in files.items():
        (src / name).parent.mkdir(exist_ok=True)
        (src / name).write_bytes(data)
    return splice.with_transport(app), files


@pytest.mark.parametrize("lookup", ["found", "not found"])
@pytest.mark.parametrize(("protocol", "loop"), PROTOCOLS)
def test_raw_stream_out_reaches_a_plain_client_spliced_or_copied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spliced_calls: list[int], protocol: str, loop: str,
        lookup: str) -> None:
    if lookup == "not found":  # what a uvicorn without send.__self__.transport looks like
        monkeypatch.setattr(splice, "connection_transport", lambda send: None)
    app, files = volume_server(tmp_path)
    with uvicorn_serving(app, protocol, loop) as addr:
        conn = HTTPConnection(*addr, timeout=30)
        conn.request("GET", "/api/v1/volumes/src/stream-out", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        head = {k.lower(): v for k, v in resp.getheaders()}
        raw = resp.read()  # http.client checks the chunked framing up to the last, empty chunk
        assert resp.status == 200, raw
        assert head.get("transfer-encoding") == "chunked" and "content-length" not in head, head
        # the connection is kept alive and carries on after the body: nothing was written past its end
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok"
        conn.close()
    assert len(spliced_calls) == (1 if lookup == "found" else 0)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        got = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}  # type: ignore[union-attr]
    assert got == {f"./{n}": d for n, d in files.items()}
