"""The fast way of stream-in: tar headers are parsed and checked in Python, GNU ``tar x`` writes the files.

`streaming.extract` uses this for raw and zstd streams. Python reads the stream, parses every header
(ustar/GNU/v7, GNU long names, per-file PAX records: `members`) and hands each entry to the caller's
`Check`, a plain callable ``check(member) -> Changes`` (`streaming` passes its `EntryCheck` over a view of
the volume that includes what this stream has already sent to tar; this package knows nothing of the
rules). GNU ``tar x`` only ever sees a re-written stream: a fresh header made here from the checked
fields (the normalised relative name, link name and mode the check returns) followed by the member's data
bytes, so nothing tar reads can differ from what was checked.

Writing is GNU tar's own (`writers`): it creates regular files with ``O_CREAT|O_EXCL`` and unlinks an
existing non-directory first (never writes through a symlink or hard link), creates symlinks whose target
is absolute or has ``..`` only at the end (placeholders until then), restores owners numerically and
directory attributes at the end (``--delay-directory-restore``, as tarfile's extractall does).

The stream comes either as chunks of bytes (`feeds.Feed`) or from a `Source` that can move bytes into
tar's pipe without copying them through Python (`feeds.SourceFeed`, stream-from a peer:
`zerocopy.PeerBody`): there only the header blocks (and small members, with the next header, in one read)
are read into Python; the data of bigger members goes on to tar's stdin with ``splice``
(`writers.StagedWriter`). Headers are checked and re-made the same way on either path, and every header
block tar reads is one this package wrote: spliced pages may be shared with a same-host sender that could
still change them, so the peer's bytes reach tar only as member data, exactly as many as the checked
header says (never a header read from the peer in place).

Anything this parser does not handle (sparse members, global PAX headers, unknown types or PAX keys,
bad checksums, ...) ends the fast path, and so does a `Handover` the check raises (a directory entry over
a symlink): tar is let finish what it was sent, then the rest of the stream, from that member's first
header block on, is returned for tarfile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Required, TypedDict

from airside.baggageclaim.errors import BadStream
from airside.baggageclaim.tarpipe.feeds import Chunk, Feed, Source, SourceFeed
from airside.baggageclaim.tarpipe.members import BLOCK, DIR, Handover, Member, header, read_member
from airside.baggageclaim.tarpipe.writers import F_SETPIPE_SZ, NONFATAL, StagedWriter, TarWriter, gnu_tar

__all__ = ["F_SETPIPE_SZ", "NONFATAL", "Changes", "Check", "Chunk", "Handover", "Member", "Source", "gnu_tar", "pipe"]


class Changes(TypedDict, total=False):
    """What a check makes of an entry: its normalised name (``"."`` for the destination itself) and, where
    they differ from the member's, its link name and mode (the same keys as `tarfile.TarInfo.replace`)."""

    name: Required[str]
    linkname: str
    mode: int


Check = Callable[[Member], Changes]
"""Checks one member before anything of it is sent to tar: returns its `Changes`, raises the refusal
(a `VolumeError` naming the entry), or raises `Handover` to end the fast path at this member."""


def pipe(chunks: Iterable[Chunk] | Source, dest: Path, check: Check) -> Iterator[Chunk] | None:
    """Extracts chunks (a decoded tar stream, or a `Source`) into dest with GNU tar, every member passed
    through `check` first. Returns None when done, or the rest of the stream (from the first header block of
    a member this path does not handle) for tarfile: tar has then written everything before that member.
    Raises the check's refusals and BadStream; tar is killed then."""
    writer: TarWriter
    feed: Feed | SourceFeed
    if isinstance(chunks, Source):
        writer = staged = StagedWriter(dest)
        feed = SourceFeed(chunks, staged)
    else:
        writer = TarWriter(dest)
        feed = Feed(chunks, writer)
    add, forward = writer.add, feed.forward
    try:
        while True:
            raw: list[bytes] = []
            try:
                m = read_member(feed, raw)
                if m is None:
                    break
                changes = check(m)
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
