"""Tar headers for the fast path: parsing a member (ustar/GNU/v7 header blocks, GNU long names, per-file
PAX records) and making a fresh header from its checked fields.

`read_member` reads one member's header blocks from a `Blocks` (a `feeds.Feed` or `feeds.SourceFeed`) and
returns a `Member`; anything this parser does not handle raises `Handover` (the caller hands the rest of
the stream, from that member's first block, to tarfile). `header` makes the only header blocks tar x
ever reads: from the checked name, link name and mode, and the member's parsed numbers.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from typing import Protocol

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
ZERO_155 = bytes(155)
SEP = (0, 32)  # what ends a numeric field
MAX_EXT = 1 << 20  # GNU long name / PAX record blocks bigger than this go to the tarfile path
REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"
MEMBER_TYPES = frozenset((REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT))
REGULAR = frozenset((REG, AREG, CONT))
PAX_KEYS = frozenset(("path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime",
                      "comment"))
PAX_IGNORED_PREFIXES = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")  # tarfile does not restore them either
NUMBER = re.compile(rb"-?[0-9]+(\.[0-9]+)?")
USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s247x")  # name .. magic+version, the rest zero


class Handover(Exception):
    """This member is not for the fast path: hand the rest of the stream to tarfile."""


class Member:
    """One parsed entry, with the TarInfo attributes and methods an entry check uses (`name`, `linkname`,
    `mode`, `isdir()` ...). `raw_name` and `raw_link` are the bytes the stream gave; `name` and `linkname`
    are them decoded (utf-8, surrogateescape), set by `read_member` once the extended headers are applied."""

    __slots__ = ("raw_name", "raw_link", "name", "linkname", "type", "mode", "uid", "gid", "size", "mtime",
                 "devmajor", "devminor", "pax_mtime")

    raw_name: bytes
    raw_link: bytes
    name: str
    linkname: str
    type: bytes  # the typeflag (REG, DIR, ...; GNU/PAX extended types only inside `read_member`)
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    devmajor: int
    devminor: int
    pax_mtime: bytes | None  # a PAX mtime record's value, kept as given (sub-second times)

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


class Blocks(Protocol):
    """Where `read_member` reads header blocks from (`feeds.Feed`, `feeds.SourceFeed`)."""

    offset: int  # bytes of the stream taken so far

    def take(self, n: int) -> bytes:
        """Exactly n bytes (b"" at a clean end of the stream; Handover on a partial block)."""
        ...


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
    """n as a NUL-ended octal field of width bytes, None if it does not fit."""
    s = b"%0*o" % (width - 1, n)
    return s + b"\0" if len(s) < width else None


def _zero(width: int) -> bytes:
    """The octal field 0 of width bytes (what `_octal(0, width)` gives)."""
    return b"0" * (width - 1) + b"\0"


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
    values = {"uid": m.uid, "gid": m.gid, "size": size, "mtime": m.mtime}
    widths = {"uid": 8, "gid": 8, "size": 12, "mtime": 12}
    fields: dict[str, bytes] = {}
    for k, v in values.items():
        octal = _octal(v, widths[k]) if k != "mtime" or v >= 0 else None
        if octal is None:
            octal = _zero(widths[k])
            if not (k == "mtime" and m.pax_mtime is not None):
                pax.append(_pax_record(k, str(v).encode()))
        fields[k] = octal
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
    devmajor = devminor = b""
    if m.type in (CHR, BLK):
        major, minor = _octal(m.devmajor, 8), _octal(m.devminor, 8)
        if major is None or minor is None:
            raise Handover("device number too big")
        devmajor, devminor = major, minor
    typeflag = REG if m.type in (AREG, CONT) else m.type
    out = b""
    if pax:
        data = b"".join(pax)
        out = _block(b"././@PaxHeader", 0o644, _zero(8), _zero(8), b"%011o\0" % len(data), _zero(12), b"x",
                     b"", b"", b"")
        out += data + bytes(-len(data) % BLOCK)
    return out + _block(name, mode & 0o7777, fields["uid"], fields["gid"], fields["size"], fields["mtime"],
                        typeflag, linkname, devmajor, devminor)


def _block(name: bytes, mode: int, uid: bytes, gid: bytes, size: bytes, mtime: bytes, typeflag: bytes,
           linkname: bytes, devmajor: bytes, devminor: bytes) -> bytes:
    """One header block from its fields (numbers already as fields; mode at most 0o7777)."""
    buf = bytearray(BLOCK)
    buf[0 : len(name)] = name
    buf[100:108] = _octal8(mode)
    buf[108:116], buf[116:124], buf[124:136], buf[136:148] = uid, gid, size, mtime
    buf[148:156] = b"        "
    buf[156:157] = typeflag
    buf[157 : 157 + len(linkname)] = linkname
    buf[257:265] = b"ustar\x0000"
    buf[329 : 329 + len(devmajor)] = devmajor
    buf[337 : 337 + len(devminor)] = devminor
    buf[148:156] = b"%06o\0 " % _bytesum(buf)
    return bytes(buf)


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
    m.raw_name = name
    m.raw_link = _field(buf, 157, 257)
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


def read_member(feed: Blocks, raw: list[bytes]) -> Member | None:
    """The next member (its extended headers applied, its name and link name decoded), None at the end of
    the archive. Every block read is appended to raw (for a hand-over)."""
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
    if m.type == AREG and m.raw_name.endswith(b"/"):
        m.type = DIR  # old V7 directories
    if m.size and m.type not in REGULAR:
        raise Handover("data on a member that is not a regular file")
    m.name = m.raw_name.decode("utf-8", "surrogateescape")
    m.linkname = m.raw_link.decode("utf-8", "surrogateescape")
    return m


def _extended(feed: Blocks, raw: list[bytes], m: Member) -> Member:
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
        m.raw_name = long_name
    if long_link is not None:
        m.raw_link = long_link
    if pax:
        if (long_name is not None and "path" in pax) or (long_link is not None and "linkpath" in pax):
            raise Handover("PAX and GNU long names together")
        for k, v in pax.items():
            if k not in PAX_KEYS and not k.startswith(PAX_IGNORED_PREFIXES):
                raise Handover(f"PAX record {k}")
            if k == "path":
                m.raw_name = v
            elif k == "linkpath":
                m.raw_link = v
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
