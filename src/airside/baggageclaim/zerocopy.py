"""Stream-from without copying the data through Python.

A stream-from moves a volume tar c → sending server → network → receiving server → tar x. Passing the
bytes through Python costs a copy in and a copy out on each server (more CPU than either tar); here they
stay in the kernel:

- the sending server (`send_chunks`) splices GNU tar's stdout into the connection's socket, framing it as
  HTTP/1.1 chunks itself (uvicorn writes the response head and the last, empty chunk);
- the receiving server (`PeerBody`) reads the peer's response itself from a plain socket (chunked,
  Content-Length or close-delimited) and is a `tarpipe.Source`: only tar header blocks (and small
  members) are read into Python, to be checked and re-made as before; the data of bigger members is
  spliced from the socket into tar x's pipe.

Nothing about what is checked changes: tar x still only sees headers made from checked fields, and the
data it gets is exactly the member's data (as many bytes as its checked header says). The server falls
back to the copying path where this cannot work (compression, TLS, a proxy, an ASGI server other than
uvicorn, no ``os.splice``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import socket
import struct
import termios
from collections.abc import Callable

from airside.baggageclaim import tarpipe
from airside.baggageclaim.errors import InvalidRequest, PeerError, StreamTooLarge

MAX_HEAD = 64 << 10  # bytes of a response head
MAX_LINE = 4096  # bytes of one chunk-size or trailer line
ERROR_BODY = 1 << 20  # bytes of an error response kept for its message
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
NEXT_CHUNK = re.compile(rb"\r\n([0-9A-Fa-f]{1,15})\r\n")  # the end of one chunk and the size of the next
AVAILABLE = hasattr(os, "splice")
PIPE_SIZE = 1 << 20
F_GETPIPE_SZ = 1032


class PeerBody(tarpipe.Source):
    """The body of ``GET target`` on a peer volume server, read straight from the socket.

    The body is spliced from the socket into a pipe of its own in big pieces (socket reads are dear:
    each one runs TCP's receive path); `read` and `move` then take from that pipe (a read, or a splice
    into tar's pipe: page references move, the bytes are not copied).

    Connects on first use. A response of 400 or more is raised as ``fail(status, body)``; a peer that cannot
    be reached, resets the connection, breaks the HTTP framing or closes before the body's end is a
    PeerError starting with ``what``. Past `limit` body bytes: StreamTooLarge.
    """

    def __init__(self, host: str, port: int, target: str, headers: dict[str, str], *, what: str,
                 fail: Callable[[int, bytes], Exception], timeout: float = 30.0) -> None:
        for k, v in [("target", target), *headers.items()]:
            if any(c in v for c in "\r\n\0"):
                raise InvalidRequest(f"{k}: line breaks and NUL bytes are not allowed")
        self.addr, self.timeout, self.what, self.fail = (host, port), timeout, what, fail
        lines = [f"GET {target} HTTP/1.1", "Connection: close", "Accept-Encoding: identity",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock: socket.socket | None = None
        self.fd = -1
        self.pre = b""  # bytes read from the socket past the head, not yet consumed
        self.chunked = False
        self.eof_ends = False  # close-delimited: the end of the connection is the end of the body
        self.crlf = False  # a CRLF ends the chunk just read
        self.left = 0  # body bytes still to come in this chunk (chunked) or in the body
        self.end = False
        self.total = 0  # body bytes taken from the socket
        self.pipe_r = self.pipe_w = -1
        self.held = 0  # body bytes in the pipe
        self.cap = 0  # the pipe's size

    # --- the connection -----------------------------------------------------------------------------
    def broken(self, why: object) -> PeerError:
        if isinstance(why, BaseException):
            why = f"{why.__class__.__name__}: {why}"
        return PeerError(f"{self.what}: {why}")

    def open(self) -> None:
        try:
            self.pipe_r, self.pipe_w = os.pipe()
            # never wait on the pipe's write end: this thread is its only reader (spliced socket buffers
            # can fill its slots before its byte size)
            os.set_blocking(self.pipe_w, False)
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.pipe_w, tarpipe.F_SETPIPE_SZ, PIPE_SIZE)
            self.cap = fcntl.fcntl(self.pipe_w, F_GETPIPE_SZ)
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.sock.settimeout(None)  # a slow peer is not an error (httpx's read=None)
            self.fd = self.sock.fileno()
            self.sock.sendall(self.request)
            head = b""
            while (end := head.find(b"\r\n\r\n")) < 0:
                if len(head) > MAX_HEAD:
                    raise self.broken("response head too large")
                got = self.sock.recv(65536)
                if not got:
                    raise self.broken("connection closed before a response")
                head += got
        except OSError as e:
            self.close()
            raise self.broken(e) from e
        except BaseException:
            self.close()
            raise
        head, self.pre = head[:end], head[end + 4 :]
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self.close()
            raise self.broken(f"not an HTTP/1.x response: {lines[0][:100]!r}")
        status = int(parts[1])
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self.close()
                raise self.broken(f"bad response header {line[:100]!r}")
            fields[name.strip().lower()] = value.strip()
        te = fields.get(b"transfer-encoding", b"").lower()
        if te:
            if te.split(b",")[-1].strip() != b"chunked":
                self.close()
                raise self.broken(f"transfer-encoding {te.decode(errors='replace')!r}")
            self.chunked = True
        elif b"content-length" in fields:
            if not fields[b"content-length"].isdigit():
                self.close()
                raise self.broken("bad content-length")
            self.left = int(fields[b"content-length"])
        else:
            self.eof_ends, self.left = True, 1 << 62
        if not 200 <= status < 300:
            try:
                self.limit = self.total + ERROR_BODY
                body = self.read(ERROR_BODY)
            except (PeerError, StreamTooLarge):
                body = b""
            finally:
                self.close()
            raise self.fail(status, body)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        for fd in (self.pipe_r, self.pipe_w):
            if fd >= 0:
                os.close(fd)
        self.fd = self.pipe_r = self.pipe_w = -1

    def __enter__(self) -> PeerBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the framing --------------------------------------------------------------------------------
    def _line(self) -> bytes:
        line = b""
        while True:
            if self.pre:
                i = self.pre.find(b"\n")
                if i >= 0:
                    line += self.pre[: i + 1]
                    self.pre = self.pre[i + 1 :]
                    return line
                line += self.pre
                self.pre = b""
            if len(line) > MAX_LINE:
                raise self.broken("chunk header line too long")
            peek = self.sock.recv(MAX_LINE, socket.MSG_PEEK)  # type: ignore[union-attr]
            if not peek:
                raise self.broken("connection closed before the end of the body")
            i = peek.find(b"\n")
            self.pre = self.sock.recv(i + 1 if i >= 0 else len(peek))  # type: ignore[union-attr]

    def _next_chunk(self) -> None:
        try:
            if self.crlf and not self.pre:  # the usual case: CRLF, size, CRLF in one peek and one read
                peek = self.sock.recv(64, socket.MSG_PEEK)  # type: ignore[union-attr]
                m = NEXT_CHUNK.match(peek)
                if m:
                    self.sock.recv(m.end(), socket.MSG_WAITALL)  # type: ignore[union-attr]  # (peeked: there)
                    self.left = int(m.group(1), 16)
                    if self.left:
                        return
                    self.crlf = False  # the last chunk: its trailer follows
                    while self._line() not in (b"\r\n", b"\n"):
                        pass
                    self.end = True
                    return
            if self.crlf and self._line() not in (b"\r\n", b"\n"):
                raise self.broken("chunk data longer than its size")
            size = self._line().split(b";", 1)[0].strip()
            if not CHUNK_SIZE.fullmatch(size):
                raise self.broken(f"bad chunk size {size[:20]!r}")
            self.left, self.crlf = int(size, 16), True
            if not self.left:
                while self._line() not in (b"\r\n", b"\n"):  # trailer fields
                    pass
                self.end = True
        except OSError as e:
            raise self.broken(e) from e

    def _cap(self, n: int) -> int:
        """How many of n body bytes may be taken from the socket now without crossing a chunk: 0 at the
        end of the body; StreamTooLarge if there are more past the limit."""
        if not self.left and not self.end:
            if self.chunked:
                self._next_chunk()
            elif not self.eof_ends:
                self.end = True
        if self.end:
            return 0
        room = self.limit - self.total
        if room <= 0:
            if self.eof_ends and not self.pre:
                try:
                    more = self.sock.recv(1, socket.MSG_PEEK)  # type: ignore[union-attr]
                except OSError as e:
                    raise self.broken(e) from e
                if not more:
                    self.end = True
                    return 0
            raise StreamTooLarge(f"body is larger than the limit of {self.limit} bytes")
        return min(n, self.left, room)

    def _fill(self, want: int) -> None:
        """Splices body bytes from the socket into the pipe until it holds want (or the body ended)."""
        while self.held < want and (k := self._cap(self.cap - self.held)):
            try:
                if self.pre:
                    n = os.write(self.pipe_w, self.pre[:k])
                    self.pre = self.pre[n:]
                else:
                    n = os.splice(self.fd, self.pipe_w, k)
            except BlockingIOError:
                if self.held:  # the pipe is full: take from it first
                    return
                select.select([self.fd], [], [])  # (a kernel where the socket side did not wait)
                continue
            except OSError as e:
                raise self.broken(e) from e
            if not n:
                if not self.eof_ends:
                    raise self.broken("connection closed before the end of the body")
                self.end = True
            self.left -= n
            self.total += n
            self.held += n

    # --- tarpipe.Source -----------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        if self.held >= n:  # the usual case: a header block already in the pipe
            got = os.read(self.pipe_r, n)
            self.held -= len(got)
            if len(got) == n:
                return got
            return got + self.read(n - len(got))
        if self.sock is None:
            self.open()
        parts = []
        while n:
            self._fill(min(n, self.cap))
            if not self.held:
                break
            got = os.read(self.pipe_r, min(n, self.held))
            self.held -= len(got)
            n -= len(got)
            parts.append(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def move(self, fd: int, n: int) -> int:
        if not self.held:
            if self.sock is None:
                self.open()
            self._fill(1)
            if not self.held:
                return 0
        moved = os.splice(self.pipe_r, fd, min(n, self.held))  # BrokenPipeError: tar is gone
        self.held -= moved
        return moved


# --- the sending side -----------------------------------------------------------------------------------
def transport_socket(transport: object) -> socket.socket | None:
    """The plain stream socket under an asyncio/uvloop transport (None for TLS or anything else)."""
    get = getattr(transport, "get_extra_info", None)
    if not AVAILABLE or get is None or get("ssl_object") is not None or get("sslcontext") is not None:
        return None
    sock = get("socket")
    if sock is None or getattr(sock, "type", None) != socket.SOCK_STREAM:
        return None
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        return None
    return sock


def _available(fd: int, poller: select.poll) -> int:
    """Waits for the pipe fd to have data; how many bytes it has (0: its writer is done)."""
    buf = bytearray(4)
    while True:
        events = 0
        for _fd, ev in poller.poll():
            events |= ev
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        n = struct.unpack("i", buf)[0]
        if n:
            return n
        if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return 0


def _send_all(sock: int, data: bytes, poller: select.poll) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(sock, view) :]
        except BlockingIOError:
            poller.poll()


def send_chunks(src: int, sock: int) -> int:
    """Splices what the pipe src carries, until its writer closes it, into the (non-blocking) stream socket
    sock as HTTP/1.1 chunks, all but the last, empty one. Returns the bytes sent; OSError when the socket
    fails (the client went away)."""
    readable, writable = select.poll(), select.poll()
    readable.register(src, select.POLLIN)
    writable.register(sock, select.POLLOUT)
    framing, total = b"", 0
    while n := _available(src, readable):
        _send_all(sock, framing + b"%x\r\n" % n, writable)
        total += n
        while n:
            try:
                n -= os.splice(src, sock, n, flags=os.SPLICE_F_MORE)
            except BlockingIOError:
                writable.poll()
        framing = b"\r\n"
    _send_all(sock, framing, writable)
    return total
