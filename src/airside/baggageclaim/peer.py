"""Stream-from: this volume server pulls a volume's tar stream from another one (its stream-out) into a
volume of its own.

`stream_from` is the service the HTTP layer calls (blocking: run it in a thread). It reads the peer's
stream-out one of three ways, all with the same URL, query, auth header and failure message:

- `peer_body`: a raw stream over plain http with no proxy, read from the socket by `zerocopy.PeerBody`
  (member data spliced into tar x, never copied through Python);
- `peer_chunks` over ``http.client`` (plain http, no proxy: a third of httpx's CPU) or httpx (https, a
  proxy), read ahead in a thread (`threads.prefetch`).

Whatever goes wrong with the peer is a `PeerError` (502) naming the volume and the peer: an error answer
carries the peer's own ``detail``.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator

import httpx

from airside.baggageclaim import routes, tarpipe, zerocopy
from airside.baggageclaim.errors import PeerError
from airside.baggageclaim.repository import Repository
from airside.baggageclaim.schemas import StreamFrom
from airside.baggageclaim.streaming import Chunk
from airside.baggageclaim.threads import prefetch

CHUNK = 1 << 20


def stream_from(repo: Repository, handle: str, src: StreamFrom, token: str) -> int:
    """Extracts `src` (a volume's sub-path on another volume server) into `src.dest_path` of volume
    `handle` (`Repository.stream_in`); returns the entries written. `token` is this server's own, used
    when `src.token` is empty. Blocks."""
    peer = peer_body(src, token)
    if peer is None:
        chunks = prefetch(peer_chunks(src, token))
        return repo.stream_in(handle, src.dest_path, chunks, src.encoding)
    with peer:  # connects on first read, inside stream_in
        return repo.stream_in(handle, src.dest_path, peer, src.encoding)


def _peer_detail(status: int, body: bytes, src: StreamFrom) -> PeerError:
    text = body.decode(errors="replace")
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        detail = text
    return PeerError(f"volume server {src.url} answered {status} for volume {src.handle!r}: {detail}")


def _peer_what(src: StreamFrom) -> str:
    return f"streaming volume {src.handle!r} from {src.url} failed"


def _peer_failed(src: StreamFrom, e: BaseException) -> PeerError:
    return PeerError(f"{_peer_what(src)}: {e.__class__.__name__}: {e}")


def _peer_url(src: StreamFrom) -> str:
    """The peer's stream-out URL of the source volume (without its query)."""
    return src.url.rstrip("/") + routes.STREAM_OUT.url(handle=src.handle)


def _peer_query(src: StreamFrom) -> dict[str, str]:
    return {"path": src.path, "encoding": src.encoding}


def _peer_auth(src: StreamFrom, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {src.token or token}"}


def _peer_target(url: httpx.URL, src: StreamFrom) -> str:
    """The request target (path and query) for the direct paths, which speak HTTP themselves."""
    return f"{url.raw_path.decode()}?{urllib.parse.urlencode(_peer_query(src))}"


def _direct(url: httpx.URL) -> bool:
    """Plain http with no proxy configured for the host: http.client can read it (a third of httpx's CPU)."""
    if url.scheme != "http":
        return False
    proxies = urllib.request.getproxies()
    return not (proxies.get("http") or proxies.get("all")) or bool(urllib.request.proxy_bypass(url.host))


def _peer_chunks_direct(url: httpx.URL, src: StreamFrom, token: str) -> Iterator[Chunk]:
    conn = http.client.HTTPConnection(url.host, url.port or 80, timeout=30.0)
    try:
        conn.connect()
        conn.sock.settimeout(None)  # like httpx's read=None: a slow peer is not an error
        conn.request("GET", _peer_target(url, src), headers=_peer_auth(src, token))
        resp = conn.getresponse()
        if resp.status >= 400:
            raise _peer_detail(resp.status, resp.read(), src)
        while True:
            buf = bytearray(CHUNK)  # a fresh buffer each time: the consumer keeps views of it
            n = resp.readinto(buf)
            if not n:
                return
            yield buf if n == CHUNK else buf[:n]
    except (OSError, http.client.HTTPException) as e:
        raise _peer_failed(src, e) from e
    finally:
        conn.close()


def peer_body(src: StreamFrom, token: str) -> zerocopy.PeerBody | None:
    """The raw tar stream of a volume on another volume server as a `zerocopy.PeerBody` (its data is spliced
    into tar x), or None when that path does not apply (compression, no GNU tar, https or a proxy)."""
    if src.encoding != "raw" or not zerocopy.AVAILABLE or not tarpipe.gnu_tar():
        return None
    try:
        url = httpx.URL(_peer_url(src))
    except httpx.InvalidURL:
        return None  # peer_chunks says what is wrong with it
    if not _direct(url):
        return None
    return zerocopy.PeerBody(
        url.host, url.port or 80, _peer_target(url, src), {"Host": url.netloc.decode(), **_peer_auth(src, token)},
        what=_peer_what(src), fail=lambda status, body: _peer_detail(status, body, src))


def peer_chunks(src: StreamFrom, token: str) -> Iterator[Chunk]:
    """The tar stream of a volume on another volume server."""
    url = _peer_url(src)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise _peer_failed(src, e) from e
    if _direct(parsed):
        yield from _peer_chunks_direct(parsed, src, token)
        return
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, read=None)) as client, client.stream(
            "GET", url, params=_peer_query(src), headers=_peer_auth(src, token),
        ) as resp:
            if resp.status_code >= 400:
                raise _peer_detail(resp.status_code, resp.read(), src)
            yield from resp.iter_raw(CHUNK)
    except httpx.HTTPError as e:
        raise _peer_failed(src, e) from e
