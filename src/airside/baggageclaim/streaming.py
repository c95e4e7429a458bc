"""Tar streams into and out of volumes, with the safety rules of stream-in.

Stream-in reads a tar stream (raw, gzip or zstd) and checks every entry before it is written
(`EntryCheck`). Raw and zstd streams are parsed by `tarpipe` and written by GNU ``tar x`` from headers
re-made from the checked fields; gzip streams, and whatever `tarpipe` hands over (sparse members, global
headers, ...), go through `tarfile` in stream mode with `EntryCheck` as its extraction filter. The rules
are the same either way:

- names: no absolute paths, no ``..``; the entry's parents inside the volume must be real
  directories, never symlinks (nothing is ever written through a symlink, so nothing lands outside);
- symlinks: a relative target must stay inside the volume; an absolute target is refused unless the
  volume is privileged (a container root file system, where ``/`` means the volume);
- hard links: to a regular file already in the volume (inside it, not a symlink);
- device nodes only in privileged volumes; setuid/setgid bits are cleared in unprivileged ones;
- an existing non-directory at an entry's path is replaced (unlinked first, never written through);
- the body stops at ``limit`` bytes.
Every refusal names the entry. Owners (numeric), modes and mtimes are kept. Names are split by the one
path sanitizer, `airside.core.paths.clean_parts`.

`EntryCheck` sees the volume through a `VolumeView`: `DiskView` (the volume as it is on disk: tarfile
writes each entry right after its check) or `TarView` (the volume as tar x will have it once it has
written what it was sent: tar lags behind the checks, so what this stream already sent counts). tarpipe
only ever calls the check (``tarpipe.Check``); it knows nothing of these rules.

Stream-out runs GNU ``tar`` (which never follows symlinks) on the volume's sub-path (`tar_command`; the
server's running form of it is `streamout.TarOut`).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, cast

import zstandard

from airside.baggageclaim import tarpipe
from airside.baggageclaim.errors import BadStream, InvalidRequest, StreamTooLarge
from airside.core.paths import UnsafePath, clean_parts

ENCODINGS = ("raw", "gzip", "zstd")
BUF = 1 << 20
TAR_BUF = 64 << 10  # tarfile's stream buffer: it re-slices this buffer on every read, so keep it small

Chunk = tarpipe.Chunk  # a stream's chunks: bytes, or fresh bytearrays a reader filled (kept, not copied)
Key = tuple[str, ...]  # a path in the volume, as its components


def _parts(name: str, what: str) -> list[str]:
    """`clean_parts` of a relative name; its refusal as InvalidRequest naming `what` and the name."""
    try:
        return clean_parts(name)
    except UnsafePath as e:
        raise InvalidRequest(f"{what} {name!r}: {e}") from e


def sub_path(data: Path, sub: str, *, must_exist: bool) -> Path:
    """data/sub, refusing absolute paths, `..` and symlinks on the way (named in the error)."""
    parts = _parts(sub or ".", "path")
    here = data
    for i, p in enumerate(parts):
        here = here / p
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            if must_exist:
                raise InvalidRequest(f"path {sub!r}: {'/'.join(parts[: i + 1])} does not exist in the volume") from None
            return data.joinpath(*parts)
        if stat.S_ISLNK(st.st_mode):
            raise InvalidRequest(f"path {sub!r}: {'/'.join(parts[: i + 1])} is a symlink")
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            raise InvalidRequest(f"path {sub!r}: {'/'.join(parts[: i + 1])} is not a directory")
    return here


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks that stops past `limit` bytes."""

    def __init__(self, chunks: Iterable[Chunk], limit: int) -> None:
        self.chunks: Iterator[Chunk] = iter(chunks)
        self.limit, self.total = limit, 0
        self.buf, self.pos = memoryview(b""), 0

    def readable(self) -> bool:
        return True

    # io's stub takes any writable buffer; tarfile and zstandard hand memoryviews, which this slices
    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        while self.pos >= len(self.buf):
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            if self.total >= self.limit:
                raise StreamTooLarge(f"body is larger than the limit of {self.limit} bytes")
            chunk = chunk[: self.limit - self.total + 1]  # hand out up to the limit; fail on the byte after it
            self.total += len(chunk)
            if self.total > self.limit:
                chunk = chunk[:-1]
            self.buf, self.pos = memoryview(chunk), 0
        n = min(len(b), len(self.buf) - self.pos)
        b[:n] = self.buf[self.pos : self.pos + n]
        self.pos += n
        return n


def _reader(chunks: Iterable[Chunk], limit: int) -> BinaryIO:
    """A `ChunkReader` as the binary file tarfile and zstandard read from: their stubs want IO[bytes]
    (which no RawIOBase is), they only call read/readinto."""
    return cast(BinaryIO, ChunkReader(chunks, limit))


class Entry(Protocol):
    """What `EntryCheck` reads of an entry: a `tarfile.TarInfo` or a `tarpipe.Member`."""

    @property
    def name(self) -> str: ...
    @property
    def linkname(self) -> str: ...
    @property
    def mode(self) -> int: ...
    def isdir(self) -> bool: ...
    def isreg(self) -> bool: ...
    def issym(self) -> bool: ...
    def islnk(self) -> bool: ...
    def ischr(self) -> bool: ...
    def isblk(self) -> bool: ...


class VolumeView(Protocol):
    """The volume as `EntryCheck` sees it (paths it knows to be real directories aside)."""

    def mode(self, key: Key) -> int | None:
        """The st_mode at data/key, not following a symlink; None when nothing is there."""
        ...

    def replace(self, key: Key, member: Entry, mode: int) -> None:
        """A non-directory (of `mode`) is at the checked entry's path: make way for the entry (never write
        through what is there)."""
        ...

    def wrote(self, key: Key, member: Entry) -> None:
        """The entry at key passed its check (and will be written)."""
        ...


class DiskView:
    """The volume as it is on disk: for tarfile, which writes each entry right after its check."""

    def __init__(self, data: Path) -> None:
        self.data_s = str(data)

    def mode(self, key: Key) -> int | None:
        try:
            return os.lstat(os.path.join(self.data_s, *key)).st_mode
        except FileNotFoundError:
            return None

    def replace(self, key: Key, member: Entry, mode: int) -> None:
        os.unlink(os.path.join(self.data_s, *key))

    def wrote(self, key: Key, member: Entry) -> None:
        pass


class TarView:
    """The volume as tar x will have it once it has written what this stream sent it (tar lags behind the
    checks): what the stream made, else nothing in a directory it made, else `disk`. tar unlinks what is
    in the way itself; a directory entry over a symlink ends the fast path (tar would keep the symlink)."""

    def __init__(self, disk: VolumeView) -> None:
        self.disk = disk
        self.made: dict[Key, int] = {}  # non-directories this stream sent: their file type
        self.absent: set[Key] = set()  # paths that were not there before this stream

    def mode(self, key: Key) -> int | None:
        mode = self.made.get(key)
        if mode is not None:
            return mode
        if key[:-1] in self.absent:  # in a directory this stream made: nothing there but what it sent
            return None
        mode = self.disk.mode(key)  # untouched by this stream: as it is on disk
        if mode is None:
            self.absent.add(key)
        return mode

    def replace(self, key: Key, member: Entry, mode: int) -> None:
        if member.isdir() and stat.S_ISLNK(mode):
            raise tarpipe.Handover("directory over a symlink")
        # tar itself unlinks what is in the way (O_EXCL, then unlink and retry)

    def wrote(self, key: Key, member: Entry) -> None:
        if member.isdir():
            self.made.pop(key, None)
        elif member.issym():
            self.made[key] = stat.S_IFLNK
        elif member.isreg() or member.islnk():
            self.made[key] = stat.S_IFREG
        else:
            self.made[key] = stat.S_IFIFO


class EntryCheck:
    """The rules for one stream-in (see the module docstring), over a view of the volume (`DiskView` when
    none is given). `check` is the `tarpipe.Check`; calling it is the tarfile extraction filter."""

    def __init__(self, data: Path, sub_parts: list[str], privileged: bool, view: VolumeView | None = None) -> None:
        self.data, self.sub_parts, self.privileged = data, sub_parts, privileged
        self.view: VolumeView = view or DiskView(data)
        self.real_dirs: set[Key] = set()  # paths known to be (or become) real directories
        self.current = ""
        self.entries = 0

    def _mode(self, key: Key) -> int | None:
        """The st_mode at data/key as the view has it (not following a symlink), None when nothing is
        there; a path known to be a real directory is one."""
        if key in self.real_dirs:
            return stat.S_IFDIR
        return self.view.mode(key)

    def _check_parents(self, rel: list[str], entry: str) -> None:
        """Every parent of rel in the volume is a real directory, or missing (the extraction makes it)."""
        if len(rel) > 1 and tuple(rel[:-1]) in self.real_dirs:
            return  # a known real directory: its parents were checked before it was added
        for i in range(1, len(rel)):
            key = tuple(rel[:i])
            if key in self.real_dirs:
                continue
            mode = self._mode(key)
            if mode is None:
                self.real_dirs.update(tuple(rel[:j]) for j in range(i, len(rel)))  # the extraction makes them
                return
            if stat.S_ISLNK(mode):
                raise InvalidRequest(f"entry {entry!r}: its parent {'/'.join(key)} is a symlink; not writing through it")
            if not stat.S_ISDIR(mode):
                raise InvalidRequest(f"entry {entry!r}: its parent {'/'.join(key)} is not a directory")
            self.real_dirs.add(key)

    def __call__(self, member: tarfile.TarInfo, _dest: str) -> tarfile.TarInfo:
        return member.replace(**self.check(member), deep=False)

    def check(self, member: Entry) -> tarpipe.Changes:
        """Checks one entry and returns the changes to make to it (normalised name and link name, mode
        without setuid bits); raises InvalidRequest naming the entry."""
        entry = member.name
        self.current = entry
        parts = _parts(entry, "entry")
        rel = self.sub_parts + parts
        changes: tarpipe.Changes = {"name": "/".join(parts) or "."}
        if not parts and not member.isdir():
            raise InvalidRequest(f"entry {entry!r}: only a directory may name the destination itself")
        self._check_parents(rel, entry)

        if member.issym():
            target = member.linkname
            if target.startswith("/"):
                if not self.privileged:
                    raise InvalidRequest(
                        f"entry {entry!r}: symlink to absolute path {target!r} points outside the volume "
                        "(allowed only in privileged volumes, where / is the volume root)")
            else:
                depth = list(rel[:-1])
                for p in target.split("/"):
                    if p in ("", "."):
                        continue
                    if p == "..":
                        if not depth:
                            raise InvalidRequest(f"entry {entry!r}: symlink to {target!r} points outside the volume")
                        depth.pop()
                    else:
                        depth.append(p)
        elif member.islnk():
            lparts = _parts(member.linkname, f"entry {entry!r}: hard link target")
            lrel = self.sub_parts + lparts
            self._check_parents(lrel, entry)
            lmode = self._mode(tuple(lrel))
            if lmode is None or not stat.S_ISREG(lmode):
                raise InvalidRequest(
                    f"entry {entry!r}: hard link to {member.linkname!r}, which is not a regular file in the volume")
            changes["linkname"] = "/".join(lparts)
        elif (member.ischr() or member.isblk()) and not self.privileged:
            raise InvalidRequest(f"entry {entry!r}: device node (only privileged volumes may hold device nodes)")

        if not self.privileged and member.mode & (stat.S_ISUID | stat.S_ISGID):
            changes["mode"] = member.mode & ~(stat.S_ISUID | stat.S_ISGID)

        if parts:
            key = tuple(rel)
            mode = self._mode(key)
            if mode is not None:
                if stat.S_ISDIR(mode):
                    if not member.isdir():
                        raise InvalidRequest(f"entry {entry!r}: would replace a directory with a non-directory")
                else:  # replace, never write through an existing symlink or hard link
                    self.view.replace(key, member, mode)
            if member.isdir():
                self.real_dirs.add(key)
            self.view.wrote(key, member)
        self.entries += 1
        return changes


def _decoded(raw: BinaryIO, encoding: str) -> tuple[BinaryIO, Literal["r|", "r|gz"]]:
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=BUF), "r|"
    if encoding == "gzip":
        return raw, "r|gz"
    if encoding == "raw":
        return raw, "r|"
    raise InvalidRequest(f"encoding {encoding!r}: choose one of {', '.join(ENCODINGS)}")


def _empty_or_missing(p: Path) -> bool:
    try:
        return not any(os.scandir(p))
    except FileNotFoundError:
        return True


def _undo(dest: Path) -> None:
    """Removes what a failed stream wrote into a destination that was empty before."""
    for e in os.scandir(dest):
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path)
        else:
            os.unlink(e.path)


def _created_from(data: Path, sub_parts: list[str]) -> Path | None:
    here = data
    for p in sub_parts:
        here = here / p
        if not os.path.lexists(here):
            return here
    return None


def _limited(chunks: Iterable[Chunk], limit: int) -> Iterator[Chunk]:
    total = 0
    for chunk in chunks:
        if not chunk:
            continue
        total += len(chunk)
        if total > limit:
            raise StreamTooLarge(f"body is larger than the limit of {limit} bytes")
        yield chunk


def _zstd_chunks(chunks: Iterable[Chunk], limit: int) -> Iterator[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(_reader(chunks, limit), read_size=BUF)
    while block := reader.read(BUF):
        yield block


def extract(chunks: Iterable[Chunk] | tarpipe.Source, data: Path, sub: str, *, privileged: bool,
            encoding: str = "raw", limit: int, use_tar: bool | None = None) -> tuple[int, bool]:
    """Streams a tar into data/sub. Returns (entries written, True).

    Raw and zstd streams are checked here and written by GNU ``tar x`` (`tarpipe`), unless use_tar is
    False or tar is missing; gzip streams, and the rest of a stream from the first member `tarpipe` does
    not handle, go through tarfile. The same rules (`EntryCheck`) hold either way. chunks is an iterable
    of bytes, or a `tarpipe.Source` (raw bytes it can splice into tar's pipe; it stops past ``limit``
    bytes itself: extract sets it).

    On failure raises a VolumeError naming the entry. If the destination was empty or missing before,
    what was written is removed first (the volume is as it was); otherwise the caller must mark the
    volume failed: the error then has ``restored = False``.
    """
    if encoding not in ENCODINGS:
        raise InvalidRequest(f"encoding {encoding!r}: choose one of {', '.join(ENCODINGS)}")
    dest = sub_path(data, sub, must_exist=False)
    sub_parts = _parts(sub or ".", "path")
    first_missing = _created_from(data, sub_parts)
    restorable = _empty_or_missing(dest)
    if use_tar is None:
        use_tar = encoding != "gzip" and tarpipe.gnu_tar()
    view = TarView(DiskView(data)) if use_tar else None
    check = EntryCheck(data, sub_parts, privileged, view)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        try:
            if use_tar:
                decoded: Iterable[Chunk] | tarpipe.Source
                if encoding == "zstd":
                    decoded = _zstd_chunks(chunks, limit)
                elif isinstance(chunks, tarpipe.Source):  # raw bytes it can splice into tar's pipe
                    chunks.limit = limit
                    decoded = chunks
                else:
                    decoded = _limited(chunks, limit)
                rest = tarpipe.pipe(decoded, dest, check.check)
                if rest is None:
                    return check.entries, True
                plain = EntryCheck(data, sub_parts, privileged)  # tar is done: the volume is as on disk
                plain.entries, plain.current = check.entries, check.current
                check = plain
                fileobj: BinaryIO = _reader(rest, 1 << 62)
                mode: Literal["r|", "r|gz"] = "r|"
            else:
                fileobj, mode = _decoded(_reader(chunks, limit), encoding)  # unbuffered: the limit trips
            with tarfile.open(fileobj=fileobj, mode=mode, bufsize=TAR_BUF) as tf:  # in the entry crossing it
                # set by TarFile.__init__ (its copybufsize argument), not declared in typeshed's TarFile
                tf.copybufsize = 4 * TAR_BUF  # type: ignore[attr-defined]
                tf.extractall(str(dest), numeric_owner=True, filter=check)
        except (tarfile.ReadError, tarfile.CompressionError, EOFError, zstandard.ZstdError) as e:
            where = f"after entry {check.current!r}" if check.current else "before the first entry"
            raise BadStream(f"not a readable {encoding} tar stream {where}: {e}") from e
        except tarfile.ExtractError as e:
            raise InvalidRequest(f"entry {check.current!r}: {e}") from e
        except OSError as e:
            raise OSError(e.errno, f"writing entry {check.current!r} failed: {e.strerror or e}") from e
    except BaseException as e:
        if isinstance(e, StreamTooLarge) and check.current:
            e.message = f"{e.message} (while reading entry {check.current!r})"
        if isinstance(e, BadStream) and check.current and "entry" not in e.message:
            e.message = f"not a readable {encoding} tar stream after entry {check.current!r}: {e.message}"
        # any exception carries it to Repository.stream_in (which reads it with getattr)
        e.restored = restorable or check.entries == 0  # type: ignore[attr-defined]
        if restorable and first_missing is not None:
            shutil.rmtree(first_missing, ignore_errors=True)
        elif restorable and check.entries:
            _undo(dest)
        raise
    return check.entries, True


def tar_command(data: Path, sub: str) -> list[str]:
    """The `tar` command that writes data/sub as a tar stream to stdout (a file: just that file)."""
    target = sub_path(data, sub, must_exist=True)
    # 64 KiB records (tar's default is 10 KiB): a sixth of the writes, and of the wake-ups of whoever reads
    # them; the last record is padded with zeros, as with any record size
    common = ["tar", "--numeric-owner", "--sparse", "-b", "128", "-cf", "-"]
    if target.is_dir():
        return [*common, "-C", str(target), "."]
    return [*common, "-C", str(target.parent), target.name]


def iter_tar(data: Path, sub: str = "", chunk: int = BUF) -> Iterator[bytes]:
    """Synchronous stream-out (for in-process callers and tests): tar of data/sub."""
    return tar_blocks(tar_command(data, sub), sub or ".", chunk)


def tar_blocks(argv: list[str], what: str, chunk: int = BUF) -> Iterator[bytes]:
    """The stdout of a `tar -c` command in blocks; OSError naming `what` (and tar's message) if tar fails."""
    import subprocess

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        while block := proc.stdout.read(chunk):
            yield block
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.wait() != 0:
            raise OSError(f"tar of {what} failed: {err.strip()}")
