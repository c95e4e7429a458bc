"""The fast way of stream-in: tar headers are parsed and checked here, GNU ``tar x`` writes the files.

`streaming.extract` uses this for raw and zstd streams. Python reads the stream, parses every header
(ustar/GNU/v7, GNU long names, per-file PAX records) and checks the entry with the same rules as the
tarfile path (`ModelCheck`, an `EntryCheck` whose view of the volume includes what this stream has
already sent to tar). GNU ``tar x`` only ever sees a re-written stream: a fresh header made here from
the checked fields (normalised relative name, link name, mode without setuid bits in unprivileged
volumes) followed by the member's data bytes, so nothing tar reads can differ from what was checked.

Writing is GNU tar's own: it creates regular files with ``O_CREAT|O_EXCL`` and unlinks an existing
non-directory first (never writes through a symlink or hard link), creates symlinks whose target is
absolute or has ``..`` only at the end (placeholders until then), restores owners numerically and
directory attributes at the end (``--delay-directory-restore``, as tarfile's extractall does).

The stream comes either as chunks of bytes (`Feed`) or from a `Source` that can move bytes into tar's pipe
without copying them through Python (`SourceFeed`, stream-from a peer: `zerocopy.PeerBody`): there only
the header blocks (and small members, with the next header, in one read) are read into Python; the data
of bigger members goes on to tar's stdin with ``splice`` (`StagedWriter`). Headers are checked and re-made
the same way on either path, and every header block tar reads is one this module wrote: spliced pages may
be shared with a same-host sender that could still change them, so the peer's bytes reach tar only as
member data, exactly as many as the checked header says (never a header read from the peer in place).

Anything this parser does not handle (sparse members, global PAX headers, unknown types or PAX keys,
bad checksums, a directory entry over a symlink, ...) ends the fast path: tar is let finish what it
was sent, then the rest of the stream, from that member's first header block on, goes through
tarfile with `EntryCheck` exactly as before (`Handover`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import stat
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from airside.baggageclaim.errors import BadStream

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
ZERO_155 = bytes(155)
SEP = (0, 32)  # what ends a numeric field
MAX_EXT = 1 << 20  # GNU long name / PAX record blocks bigger than this go to the tarfile path
IOV_MAX = 1024
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
RECORD = 256 << 10  # tar x reads records this big: one wake-up of its writer per record, not per 10 KiB
REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"
MEMBER_TYPES = frozenset((REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT))
REGULAR = frozenset((REG, AREG, CONT))
PAX_KEYS = frozenset(("path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime",
                      "comment"))
PAX_IGNORED_PREFIXES = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")  # tarfile does not restore them either
NUMBER = re.compile(rb"-?[0-9]+(\.[0-9]+)?")
USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s247x")  # name .. magic+version, the rest zero
# tar's complaints that tarfile only logs (its errorlevel 1): owners, modes and times it could not set
NONFATAL = re.compile(r"Cannot change (ownership|mode)|Cannot (utime|change times)|implausibly old time stamp|"
                      r"time stamp .* in the future|Exiting with failure status due to previous errors")


@functools.cache
def gnu_tar() -> bool:
    """Whether `tar` is GNU tar (the fast path relies on its options and its way of replacing files)."""
    try:
        out = subprocess.run(["tar", "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.startswith(b"tar (GNU tar)")


class Handover(Exception):
    """This member is not for the fast path: hand the rest of the stream to tarfile."""


class Member:
    """One parsed entry, with the TarInfo methods `EntryCheck.check` uses."""

    __slots__ = ("name", "linkname", "type", "mode", "uid", "gid", "size", "mtime", "devmajor", "devminor",
                 "pax_mtime")

    def isdir(self) -> bool:
        return self.type == DIR

    def issym(self) -> bool:
        return self.type == SYM

    def islnk(self) -> bool:
        return self.type == LNK

    def ischr(self) -> bool:
        return self.type == CHR

    def isblk(self) -> bool:
        return self.type == BLK

    def isreg(self) -> bool:
        return self.type in REGULAR


def _bytesum(block: bytes | bytearray) -> int:
    """The sum of a 512-byte block's bytes: adler32's low half is 1 + the sum of the bytes (mod 65521, which
    256 bytes cannot reach), and it runs in C."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _num(field: bytes) -> int:
    """A numeric header field: octal (NUL/space padded) or GNU base-256 (positive only)."""
    if field[0] == 0x80:
        n = 0
        for b in field[1:]:
            n = (n << 8) | b
        return n
    if field[0] & 0x80:
        raise Handover("negative base-256 number")
    s = field.split(b"\0", 1)[0].strip(b" ")
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise Handover(f"bad number {field!r}") from None


def _nts(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _field(buf: bytes, start: int, end: int) -> bytes:
    """A NUL-terminated string field buf[start:end] (its bytes before the first NUL)."""
    i = buf.find(0, start, end)
    return buf[start:i] if i >= 0 else buf[start:end]


def _octal(n: int, width: int) -> bytes | None:
    s = b"%0*o" % (width - 1, n)
    return s + b"\0" if len(s) < width else None


@functools.lru_cache(maxsize=4096)
def _octal8(n: int) -> bytes:
    """An 8-byte numeric field (mode, uid, gid: a stream has few different ones)."""
    return b"%07o\0" % n


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def _pax_records(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding
            if data[pos:].strip(b"\0"):
                raise Handover("bytes after the PAX padding")
            break
        sp = data.find(b" ", pos)
        if sp < 0 or not data[pos:sp].isdigit():
            raise Handover("malformed PAX record")
        end = pos + int(data[pos:sp])
        record = data[sp + 1 : end]
        if end > len(data) or end <= sp or not record.endswith(b"\n") or b"=" not in record:
            raise Handover("malformed PAX record")
        key, _, value = record[:-1].partition(b"=")
        k = key.decode("utf-8", "surrogateescape")
        if k in out:
            raise Handover(f"PAX record {k} twice")
        out[k] = value
        pos = end
    return out


def header(name: bytes, m: Member, linkname: bytes, mode: int) -> bytes | bytearray:
    """A fresh ustar header (with a PAX header before it when a field does not fit)."""
    size = m.size if m.type in REGULAR else 0
    if (m.uid <= 0o7777777 and m.gid <= 0o7777777 and size <= 0o77777777777 and 0 <= m.mtime <= 0o77777777777
            and m.pax_mtime is None and len(name) <= 100 and len(linkname) <= 100 and m.type not in (CHR, BLK)):
        buf = bytearray(USTAR.pack(name, _octal8(mode & 0o7777), _octal8(m.uid), _octal8(m.gid),
                                   b"%011o\0" % size, b"%011o\0" % m.mtime, b"        ",
                                   REG if m.type in (AREG, CONT) else m.type, linkname, b"ustar\x0000"))
        buf[148:155] = b"%06o\0" % _bytesum(buf)  # then the last of the eight spaces
        return buf
    pax: list[bytes] = []
    fields: dict[str, bytes | None] = {
        "uid": _octal(m.uid, 8), "gid": _octal(m.gid, 8), "size": _octal(size, 12),
        "mtime": _octal(m.mtime, 12) if m.mtime >= 0 else None,
    }
    values = {"uid": m.uid, "gid": m.gid, "size": size, "mtime": m.mtime}
    for k, v in fields.items():
        if v is None:
            fields[k] = _octal(0, 12 if k in ("size", "mtime") else 8)
            if not (k == "mtime" and m.pax_mtime is not None):
                pax.append(_pax_record(k, str(values[k]).encode()))
    if m.pax_mtime is not None:
        pax.append(_pax_record("mtime", m.pax_mtime))
    if len(name) > 100 or len(linkname) > 100:
        for key, val in (("path", name), ("linkpath", linkname)):
            if len(val) > 100:
                try:
                    val.decode("utf-8")
                except UnicodeDecodeError:
                    raise Handover("long non-UTF-8 name") from None
                pax.append(_pax_record(key, val))
        name, linkname = name[:100], linkname[:100]
    dev = (_octal(m.devmajor, 8), _octal(m.devminor, 8)) if m.type in (CHR, BLK) else (b"", b"")
    if dev[0] is None or dev[1] is None:
        raise Handover("device number too big")
    typeflag = REG if m.type in (AREG, CONT) else m.type
    out = b""
    if pax:
        data = b"".join(pax)
        out = _block(b"././@PaxHeader", 0o644, _octal(0, 8), _octal(0, 8), _octal(len(data), 12),
                     _octal(0, 12), b"x", b"", b"", b"")
        out += data + bytes(-len(data) % BLOCK)
    return out + _block(name, mode & 0o7777, fields["uid"], fields["gid"], fields["size"], fields["mtime"],
                        typeflag, linkname, dev[0], dev[1])


def _block(name: bytes, mode: int, uid: Any, gid: Any, size: Any, mtime: Any, typeflag: bytes, linkname: bytes,
           devmajor: Any, devminor: Any) -> bytes:
    buf = bytearray(BLOCK)
    buf[0 : len(name)] = name
    buf[100:108] = _octal(mode, 8)  # type: ignore[assignment]
    buf[108:116], buf[116:124], buf[124:136], buf[136:148] = uid, gid, size, mtime
    buf[148:156] = b"        "
    buf[156:157] = typeflag
    buf[157 : 157 + len(linkname)] = linkname
    buf[257:265] = b"ustar\x0000"
    buf[329 : 329 + len(devmajor)] = devmajor
    buf[337 : 337 + len(devminor)] = devminor
    buf[148:156] = b"%06o\0 " % _bytesum(buf)
    return bytes(buf)


class Feed:
    """The decoded stream: whole header blocks, and data passed on as slices of the chunks (no copies)."""

    def __init__(self, chunks: Iterable[bytes], out: TarWriter) -> None:
        self.it: Iterator[bytes] = iter(chunks)
        self.buf, self.pos, self.out = memoryview(b""), 0, out
        self.offset = 0
        self.rest_prefix = b""

    def _next(self) -> bool:
        self.out.flush()
        chunk = next(self.it, None)
        if chunk is None:
            return False
        self.buf, self.pos = memoryview(chunk), 0
        return True

    def take(self, n: int) -> bytes:
        """Exactly n bytes (b"" at a clean end of the stream; Handover on a partial block)."""
        if len(self.buf) - self.pos >= n:
            self.pos += n
            self.offset += n
            return bytes(self.buf[self.pos - n : self.pos])
        parts, need = [], n
        while need:
            if self.pos >= len(self.buf) and not self._next():
                got = b"".join(parts)
                if got:
                    self.rest_prefix = got
                    raise Handover("stream ends inside a header")
                return b""
            piece = self.buf[self.pos : self.pos + need]
            parts.append(bytes(piece))
            self.pos += len(piece)
            need -= len(piece)
        self.offset += n
        return b"".join(parts)

    def forward(self, n: int) -> bool:
        """Passes n bytes on to tar; False if the stream ended first."""
        while n:
            if self.pos >= len(self.buf) and not self._next():
                return False
            piece = self.buf[self.pos : self.pos + n]
            self.out.add(piece)
            self.pos += len(piece)
            self.offset += len(piece)
            n -= len(piece)
        return True

    def rest(self, prefix: bytes) -> Iterator[bytes]:
        """The stream from `prefix` (the raw blocks of the member being handed over) on."""
        if prefix:
            yield prefix
        if self.pos < len(self.buf):
            yield bytes(self.buf[self.pos :])
        yield from self.it


class Source:
    """A raw tar stream that can also move its bytes into a file descriptor without copying them through
    Python (`SourceFeed`). Iterating it gives the rest of the stream as chunks (for tarfile). Past
    `limit` bytes it raises StreamTooLarge."""

    limit = 1 << 62

    def read(self, n: int) -> bytes:
        """n bytes (fewer only at the end of the stream)."""
        raise NotImplementedError

    def move(self, fd: int, n: int) -> int:
        """Moves up to n bytes (at least one) into fd; 0 at the end of the stream."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk


SMALL = 16 << 10  # members up to this size are read (with the next header) rather than spliced
FLUSH = 256 << 10  # write what is pending once this much is
STAGE = 256 << 10  # `StagedWriter` moves its pipe on into tar's once it holds this much


class SourceFeed:
    """`Feed` over a `Source`: whole header blocks, small members read along with the next header, the data
    of bigger members spliced straight into tar's pipe."""

    def __init__(self, src: Source, out: StagedWriter) -> None:
        self.src, self.out = src, out
        self.ahead = b""  # bytes read past the last member's data (its successor's header block)
        self.offset = 0
        self.rest_prefix = b""

    def take(self, n: int) -> bytes:
        """Exactly n bytes (b"" at a clean end of the stream; Handover on a partial block)."""
        if not self.ahead:
            got = self.src.read(n)
        elif len(self.ahead) >= n:
            got, self.ahead = self.ahead[:n], self.ahead[n:]
        else:
            got, self.ahead = self.ahead + self.src.read(n - len(self.ahead)), b""
        if len(got) == n:
            self.offset += n
            return got
        if got:
            self.rest_prefix = got
            raise Handover("stream ends inside a header")
        return b""

    def forward(self, n: int) -> bool:
        """Passes n bytes on to tar; False if the stream ended first."""
        if self.ahead:
            piece, self.ahead = self.ahead[:n], self.ahead[n:]
            self.out.add(piece)
            self.offset += len(piece)
            n -= len(piece)
        if not n:
            return True
        if n <= SMALL:
            data = self.src.read(n + BLOCK)  # this member's data and the next header block, in one read
            if len(data) < n:
                return False
            self.out.add(memoryview(data)[:n])
            self.ahead = data[n:]
            self.offset += n
            if self.out.size >= FLUSH:
                self.out.flush()
            return True
        self.out.flush()  # the header goes first
        moved = self.out.splice_from(self.src, n)
        self.offset += moved
        return moved == n

    def rest(self, prefix: bytes) -> Iterator[bytes]:
        """The stream from `prefix` (the raw blocks of the member being handed over) on."""
        if prefix:
            yield prefix
        if self.ahead:
            yield self.ahead
        yield from self.src


class TarWriter:
    """GNU ``tar x`` into dest, fed through a pipe with writev."""

    def __init__(self, dest: Path) -> None:
        cmd = ["tar", "-x", "-f", "-", "-b", str(RECORD // BLOCK), "-C", str(dest), "--numeric-owner",
               "--preserve-permissions", "--delay-directory-restore", "--warning=no-timestamp",
               "--warning=no-unknown-keyword"]
        if os.geteuid() != 0:
            cmd.append("--no-same-owner")
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self.err, stdout=subprocess.DEVNULL,
                                     env={**os.environ, "LC_ALL": "C"})
        assert self.proc.stdin is not None
        self.fd = self.proc.stdin.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, F_SETPIPE_SZ, PIPE_SIZE)
        self.pending: list[Any] = []
        self.size = 0  # bytes pending

    def add(self, data: Any) -> None:
        self.pending.append(data)
        self.size += len(data)

    def flush(self) -> None:
        """Writes what was added (BrokenPipeError if tar is gone)."""
        pending, self.pending, size, self.size = self.pending, [], self.size, 0
        while pending:
            batch = pending[:IOV_MAX]
            want = size if len(pending) <= IOV_MAX else sum(len(b) for b in batch)
            n = self._writev(batch)
            size -= n
            if n == want:
                del pending[:IOV_MAX]
                continue
            while n:  # a short write: drop what was written
                if n >= len(pending[0]):
                    n -= len(pending.pop(0))
                else:
                    pending[0] = memoryview(pending[0])[n:]
                    n = 0

    def _writev(self, batch: list[Any]) -> int:
        return os.writev(self.fd, batch)

    def end(self) -> None:
        """Writes the end of the archive."""
        self.add(ZERO_BLOCK * 2)
        self.flush()

    def finish(self, *, broken: bool = False) -> None:
        """Ends the archive, waits for tar and raises OSError with its message if it failed."""
        if not broken:
            try:
                self.end()
            except BrokenPipeError:
                broken = True
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait()
        self.err.seek(0)
        err = self.err.read().decode(errors="replace")
        self.err.close()
        fatal = [line for line in err.splitlines() if line.strip() and not NONFATAL.search(line)]
        if self.proc.returncode != 0 and (fatal or self.proc.returncode != 2):
            raise OSError(f"tar x failed (exit {self.proc.returncode}): {'; '.join(fatal) or err.strip()}")
        if broken:
            raise OSError("tar x stopped reading the stream")

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.err.close()


class StagedWriter(TarWriter):
    """The `TarWriter` of `SourceFeed`: headers and spliced data gather in a pipe of this writer's own and go
    on to tar's pipe in one splice per STAGE bytes. (A write into tar's pipe wakes tar synchronously, which
    pulls it onto this thread's CPU; a splice does not, and tar gets fewer, bigger wake-ups.)"""

    def __init__(self, dest: Path) -> None:
        super().__init__(dest)
        self.tar_fd = self.fd
        self.stage_r, self.fd = os.pipe()  # add/flush and splice_from write into the stage
        os.set_blocking(self.fd, False)  # never wait on it: this thread is its reader
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, F_SETPIPE_SZ, PIPE_SIZE)
        self.staged = 0

    def _writev(self, batch: list[Any]) -> int:
        while True:
            try:
                n = os.writev(self.fd, batch)
            except BlockingIOError:
                self.drain()
                continue
            self.staged += n
            return n

    def flush(self) -> None:
        if len(self.pending) == 1:  # the usual case: one header before spliced data
            data, self.pending, self.size = memoryview(self.pending[0]), [], 0
            while data:
                data = data[self._writev([data]):]
        elif self.pending:
            super().flush()
        if self.staged >= STAGE:
            self.drain()

    def splice_from(self, src: Source, n: int) -> int:
        """Moves n bytes of src into the stage; fewer only at the end of src."""
        left = n
        while left:
            try:
                moved = src.move(self.fd, left)
            except BlockingIOError:  # the stage is full
                self.drain()
                continue
            if not moved:
                break
            self.staged += moved
            left -= moved
            if self.staged >= STAGE:
                self.drain()
        return n - left

    def drain(self) -> None:
        """Moves everything staged on into tar's pipe (BrokenPipeError if tar is gone)."""
        while self.staged:
            self.staged -= os.splice(self.stage_r, self.tar_fd, self.staged)

    def end(self) -> None:
        super().end()
        self.drain()

    def _close_stage(self) -> None:
        for fd in (self.stage_r, self.fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stage_r = self.fd = -1

    def finish(self, *, broken: bool = False) -> None:
        try:
            super().finish(broken=broken)
        finally:
            self._close_stage()

    def kill(self) -> None:
        try:
            super().kill()
        finally:
            self._close_stage()


def parse_header(buf: bytes) -> Member:
    """One 512-byte header block (not a zero block)."""
    try:  # the usual case: plain octal fields
        if buf[154] not in SEP:
            raise ValueError
        chksum = int(buf[148:154], 8)
    except ValueError:
        chksum = _num(buf[148:156])
    if chksum != _bytesum(buf) - sum(buf[148:156]) + 256:  # the unsigned checksum
        raise Handover("bad checksum")
    m = Member()
    magic = buf[257:265]
    name = _field(buf, 0, 100)
    if magic == b"ustar  \0":
        if buf[345:500] != ZERO_155:  # GNU atime/ctime/multivolume/sparse fields
            raise Handover("GNU header with extra fields")
    elif magic == b"ustar\x0000":
        prefix = _field(buf, 345, 500)
        if prefix:
            name = prefix + b"/" + name
    elif magic.strip(b"\0"):
        raise Handover(f"unknown magic {magic!r}")
    m.type = t = buf[156:157]
    m.name = name  # type: ignore[assignment]
    m.linkname = _field(buf, 157, 257)  # type: ignore[assignment]
    try:  # the usual case: plain octal fields, each ended by a NUL or a space
        if not (buf[107] in SEP and buf[115] in SEP and buf[123] in SEP and buf[135] in SEP and buf[147] in SEP):
            raise ValueError
        m.mode, m.uid, m.gid = int(buf[100:107], 8), int(buf[108:115], 8), int(buf[116:123], 8)
        m.size, m.mtime = int(buf[124:135], 8), int(buf[136:147], 8)
    except ValueError:
        m.mode = _num(buf[100:108])
        m.uid, m.gid = _num(buf[108:116]), _num(buf[116:124])
        m.size, m.mtime = _num(buf[124:136]), _num(buf[136:148])
    if t == CHR or t == BLK:
        m.devmajor, m.devminor = _num(buf[329:337]), _num(buf[337:345])
    else:
        m.devmajor = m.devminor = 0
    m.pax_mtime = None
    return m


def read_member(feed: Feed | SourceFeed, raw: list[bytes]) -> Member | None:
    """The next member (its extended headers applied), None at the end of the archive. Every block read is
    appended to raw (for a hand-over)."""
    buf = feed.take(BLOCK)
    if not buf:
        if feed.offset == 0:
            raise Handover("stream ends before a member")
        return None
    raw.append(buf)
    if buf == ZERO_BLOCK:
        return None
    m = parse_header(buf)
    if m.type not in MEMBER_TYPES:  # GNU long names, PAX records (or a type this path does not handle)
        m = _extended(feed, raw, m)
    if m.type == AREG and m.name.endswith(b"/"):  # type: ignore[attr-defined]
        m.type = DIR  # old V7 directories
    if m.size and m.type not in REGULAR:
        raise Handover("data on a member that is not a regular file")
    return m


def _extended(feed: Feed | SourceFeed, raw: list[bytes], m: Member) -> Member:
    """The member after the extended header m, with the extended headers applied."""
    long_name = long_link = None
    pax: dict[str, bytes] | None = None
    while m.type in (b"L", b"K", b"x"):
        if m.size > MAX_EXT:
            raise Handover("large extended header")
        data = feed.take(m.size + (-m.size % BLOCK)) if m.size else b""
        if m.size and not data:
            raise Handover("stream ends inside an extended header")
        raw.append(data)
        data = data[: m.size]
        if m.type == b"x":
            if pax is not None:
                raise Handover("two PAX headers")
            pax = _pax_records(data)
        elif m.type == b"L":
            if long_name is not None:
                raise Handover("two long names")
            long_name = _nts(data)
        else:
            if long_link is not None:
                raise Handover("two long link names")
            long_link = _nts(data)
        buf = feed.take(BLOCK)
        if not buf:
            raise Handover("stream ends before a member")
        raw.append(buf)
        if buf == ZERO_BLOCK:
            raise Handover("zero block after an extended header")
        m = parse_header(buf)
    if m.type not in MEMBER_TYPES:
        raise Handover(f"member type {m.type!r}")
    if long_name is not None:
        m.name = long_name  # type: ignore[assignment]
    if long_link is not None:
        m.linkname = long_link  # type: ignore[assignment]
    if pax:
        if (long_name is not None and "path" in pax) or (long_link is not None and "linkpath" in pax):
            raise Handover("PAX and GNU long names together")
        for k, v in pax.items():
            if k not in PAX_KEYS and not k.startswith(PAX_IGNORED_PREFIXES):
                raise Handover(f"PAX record {k}")
            if k == "path":
                m.name = v  # type: ignore[assignment]
            elif k == "linkpath":
                m.linkname = v  # type: ignore[assignment]
            elif k in ("size", "uid", "gid"):
                if not v.isdigit():
                    raise Handover(f"PAX {k}={v!r}")
                setattr(m, k, int(v))
            elif k == "mtime":
                if not NUMBER.fullmatch(v):
                    raise Handover(f"PAX mtime={v!r}")
                m.pax_mtime = v
                m.mtime = max(int(float(v)), 0)
    return m


def pipe(chunks: Iterable[bytes] | Source, dest: Path, check: Any) -> Iterator[bytes] | None:
    """Extracts chunks (a decoded tar stream, or a `Source`) into dest with `check` (an `EntryCheck` with
    `ModelCheck`) and GNU tar. Returns None when done, or the rest of the stream (from the first header
    block of a member this path does not handle) for tarfile: tar has then written everything before that
    member. Raises the check's refusals and BadStream; tar is killed then."""
    feed: Feed | SourceFeed
    if isinstance(chunks, Source):
        writer: TarWriter = StagedWriter(dest)
        feed = SourceFeed(chunks, writer)  # type: ignore[arg-type]
    else:
        writer = TarWriter(dest)
        feed = Feed(chunks, writer)
    checked, add, forward = check.check, writer.add, feed.forward
    try:
        while True:
            raw: list[bytes] = []
            try:
                m = read_member(feed, raw)
                if m is None:
                    break
                m.name = m.name.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
                raw_link = m.linkname
                m.linkname = raw_link.decode("utf-8", "surrogateescape") if raw_link else ""
                changes = checked(m)
                name = changes["name"]
                if m.type == DIR:
                    name = "./" if name == "." else name + "/"
                link = changes.get("linkname", m.linkname)
                hdr = header(name.encode("utf-8", "surrogateescape"), m,
                             link.encode("utf-8", "surrogateescape") if link else b"",
                             changes.get("mode", m.mode))
            except Handover:
                writer.finish()
                return feed.rest(b"".join(raw) + feed.rest_prefix)
            add(hdr)
            if m.size and not forward(m.size + (-m.size % BLOCK)):
                raise BadStream("unexpected end of data")
        writer.finish()
        return None
    except BrokenPipeError:
        writer.finish(broken=True)
        raise
    except BaseException:
        writer.kill()
        raise


class ModelCheck:
    """Mixin for `EntryCheck`: the volume as tar will have it once it has written what it was sent."""

    made: dict[tuple[str, ...], int]
    absent: set[tuple[str, ...]]  # paths that were not there before this stream
    real_dirs: set[tuple[str, ...]]

    def _mode(self, key: tuple[str, ...]) -> int | None:
        mode = self.made.get(key)
        if mode is not None:
            return mode
        if key in self.real_dirs:
            return stat.S_IFDIR
        if key[:-1] in self.absent:  # in a directory this stream made: nothing there but what it sent
            return None
        mode = super()._mode(key)  # type: ignore[misc]  # untouched by this stream: as it is on disk
        if mode is None:
            self.absent.add(key)
        return mode

    def _replace(self, key: tuple[str, ...], member: Any) -> None:
        if member.isdir() and stat.S_ISLNK(self._mode(key) or 0):
            raise Handover("directory over a symlink")  # tar would keep a symlink to a directory
        # tar itself unlinks what is in the way (O_EXCL, then unlink and retry)

    def check(self, member: Any) -> dict:
        changes = super().check(member)  # type: ignore[misc]
        if changes["name"] != ".":
            key, t = self.key, member.type  # type: ignore[attr-defined]  # (members come from tarpipe)
            if t == DIR:
                self.made.pop(key, None)
            elif t == SYM:
                self.made[key] = stat.S_IFLNK
            elif t in REGULAR or t == LNK:
                self.made[key] = stat.S_IFREG
            else:
                self.made[key] = stat.S_IFIFO
        return changes
