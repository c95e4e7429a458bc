"""Raw stream-out spliced into the connection's socket (`zerocopy.send_chunks`), under uvicorn.

`with_transport` wraps the ASGI app so each http scope carries the connection's transport (`TRANSPORT`);
`spliced_tar` makes the `SplicedTar` response for a raw `streamout.TarOut` when the request came over a
plain HTTP/1.1 connection whose stream socket can be found, else None (the HTTP layer then sends tar's
output through Python: `TarOut.chunks`). Compression, TLS, HTTP/2, other ASGI servers: always None.

What this leans on beyond public API, all of it in `connection_transport` (uvicorn) and `SplicedTar`
(Starlette), and tested by ``tests/integration/baggageclaim/test_splice_transport.py`` against the
installed uvicorn (both its h11 and httptools protocols), so an upgrade that changes it fails there:

- uvicorn calls the app with ``send`` bound to its per-request ``RequestResponseCycle``, whose
  ``transport`` attribute is the connection's asyncio/uvloop transport;
- uvicorn frames a response whose head says ``transfer-encoding: chunked`` itself, writing the last,
  empty chunk when the app sends the final empty body, and writes nothing in between;
- Starlette (FastAPI) sends a `Response` an endpoint returns by calling it, using only its ``background``
  (and `init_headers`/``raw_headers``, which `SplicedTar` uses itself).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from typing import Protocol, runtime_checkable

from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from airside.baggageclaim import zerocopy
from airside.baggageclaim.streamout import TarOut
from airside.baggageclaim.threads import own_thread
from airside.core import log

LOG = log.get("airside.baggageclaim")
TRANSPORT = "airside.transport"  # scope key: the connection's asyncio/uvloop transport (`with_transport`)


@runtime_checkable
class Transport(Protocol):
    """What `SplicedTar` uses of the connection's transport (an `asyncio.Transport`, or uvloop's)."""

    def get_extra_info(self, name: str, default: object = None) -> object: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...


def connection_transport(send: Send) -> Transport | None:
    """The transport of the connection a request came in on, or None (then stream-out copies).

    The only reliance on uvicorn internals: uvicorn (``uvicorn.protocols.http.h11_impl`` and
    ``httptools_impl``) hands the app ``send`` as the bound method ``RequestResponseCycle.send``, so
    ``send.__self__`` is the cycle, and ``send.__self__.transport`` is the connection's transport.
    Neither attribute is public API; `test_splice_transport` fails, naming them, if they change."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if isinstance(transport, Transport) else None


def with_transport(app: ASGIApp) -> ASGIApp:
    """The ASGI app as uvicorn should run it: each http scope carries the connection's transport under
    `TRANSPORT` (when `connection_transport` finds it), so stream-out can splice into the socket."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            transport = connection_transport(send)
            if transport is not None:
                scope[TRANSPORT] = transport
        await app(scope, receive, send)

    return asgi


def spliced_tar(scope: Scope, tar: TarOut) -> SplicedTar | None:
    """The response that splices a raw `tar` into the request's socket, or None when that cannot work
    (compressed, not HTTP/1.1, no transport in the scope, TLS, not a stream socket, no ``os.splice``)."""
    if tar.encoding != "raw" or scope.get("http_version") != "1.1":
        return None
    transport = scope.get(TRANSPORT)
    sock = zerocopy.transport_socket(transport)
    if sock is None or not isinstance(transport, Transport):
        return None
    return SplicedTar(transport, sock, tar)


class SplicedTar(Response):
    """Raw stream-out on a plain connection: tar's stdout spliced into the socket as HTTP/1.1 chunks
    (`zerocopy.send_chunks`); uvicorn writes the head and the last chunk. A client that goes away kills
    tar; a tar that fails ends the connection without the last chunk (the client sees a broken body).

    Not made by `Response.__init__` (which would add ``content-length: 0``): the head is only the status,
    ``transfer-encoding: chunked`` and the media type (`init_headers` without a body)."""

    media_type = "application/x-tar"

    def __init__(self, transport: Transport, sock: socket.socket, tar: TarOut) -> None:
        self.status_code, self.background = 200, None
        self.init_headers({"transfer-encoding": "chunked"})
        self.transport, self.tar = transport, tar
        self.sock = os.dup(sock.fileno())  # ours: the transport closing its socket cannot hand the fd on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = False
        what = self.tar.what
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while self.transport.get_write_buffer_size() and not self.transport.is_closing():
                await asyncio.sleep(0.001)  # the head goes first
            if not self.transport.is_closing():
                # looked up here, not bound at import: tests count the calls
                await own_thread(functools.partial(zerocopy.send_chunks, self.tar.fd, self.sock))
                sent = True
        except OSError as e:  # the client went away (or stopped reading after the end of the archive)
            LOG.info("stream-out client went away", what=what, error=str(e))
            self.transport.abort()
            await asyncio.sleep(0)  # uvicorn sees the disconnect before this returns
        finally:
            os.close(self.sock)
            code, err = await asyncio.to_thread(self.tar.reap, not sent)
        if not sent:
            return
        if code != 0:
            LOG.error("stream-out failed", what=what, error=err)
            raise RuntimeError(f"tar of {what} failed: {err}")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
