"""The reading side of the fast path: where the tar stream comes from.

`Feed` reads a stream of byte chunks: header blocks are taken as bytes, member data goes on to the
`writers.TarWriter` as slices of the chunks (no copies). `SourceFeed` reads a `Source`, a raw stream
that can move its bytes into a file descriptor without copying them through Python (stream-from a peer:
`zerocopy.PeerBody`): only header blocks, and small members with the next header in one read, come into
Python; the data of bigger members is spliced into tar's pipe (`writers.StagedWriter`). Both are
`members.Blocks` for `members.read_member`, and both give the rest of the stream for a hand-over (`rest`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from airside.baggageclaim.tarpipe.members import BLOCK, Handover
from airside.baggageclaim.tarpipe.writers import StagedWriter, TarWriter

Chunk = bytes | bytearray  # what a stream of chunks may hand (a reader's fresh buffers are kept, not copied)
SMALL = 16 << 10  # members up to this size are read (with the next header) rather than spliced
FLUSH = 256 << 10  # write what is pending once this much is


class Feed:
    """The decoded stream: whole header blocks, and data passed on as slices of the chunks (no copies)."""

    def __init__(self, chunks: Iterable[Chunk], out: TarWriter) -> None:
        self.it: Iterator[Chunk] = iter(chunks)
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
        parts: list[bytes] = []
        need = n
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

    def rest(self, prefix: bytes) -> Iterator[Chunk]:
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
