"""Stream-out as the server runs it: GNU ``tar c`` of a volume's sub-path, its stdout a pipe.

`Repository.stream_out` starts one (`TarOut`); the HTTP layer only chooses how its output reaches the
client: spliced from `fd` into the socket (`splice.SplicedTar`, raw streams on a plain connection), or
copied through Python as an async body (`TarOut.chunks`, compressed when asked). Either way `reap` is
called once at the end: it kills tar if the client went away, waits for it, and gives its exit code and
stderr (a tar that failed is an error at the end of the body: the client sees a broken stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import tempfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Protocol

import zstandard

from airside.baggageclaim import streaming
from airside.baggageclaim.schemas import Encoding
from airside.core import log

LOG = log.get("airside.baggageclaim")
CHUNK = 1 << 20
MIN_SEND = 256 << 10  # the copying path sends chunks of at least this much (but the last)
F_SETPIPE_SZ = 1031
MEDIA_TYPES = {"raw": "application/x-tar", "gzip": "application/gzip", "zstd": "application/zstd"}


class Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


def compressor(encoding: Encoding) -> Compressor | None:
    """The compressor of a stream-out body in `encoding` (None: raw)."""
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=3).compressobj()
    if encoding == "gzip":
        return zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return None


class TarOut:
    """``tar c`` of data/sub running (`streaming.tar_command`: refuses ``..``, absolute paths and symlinks
    on the way, InvalidRequest naming the path), its output to be sent in `encoding`.

    `fd` is tar's stdout (a pipe of CHUNK bytes where the kernel allows); `read_block` reads it, `reap`
    ends it. `what` names the volume and path in errors and logs."""

    def __init__(self, data: Path, sub: str, encoding: Encoding, *, handle: str) -> None:
        cmd = streaming.tar_command(data, sub)
        self.handle, self.sub, self.encoding = handle, sub, encoding
        self.what = f"volume {handle!r} path {sub or '.'!r}"
        self.media_type = MEDIA_TYPES[encoding]
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.stdout: IO[bytes] = self.proc.stdout
        self.fd = self.stdout.fileno()
        with contextlib.suppress(OSError):  # a bigger pipe: fewer, larger reads and HTTP chunks
            fcntl.fcntl(self.fd, F_SETPIPE_SZ, CHUNK)

    def read_block(self) -> bytes:
        """At least MIN_SEND bytes of tar's output (less only at its end: b"" there); blocks."""
        parts, size = [], 0
        while size < MIN_SEND and (got := os.read(self.fd, CHUNK - size)):
            parts.append(got)
            size += len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def reap(self, kill: bool) -> tuple[int, str]:
        """Waits for tar (killing it first if `kill` and it still runs): its exit code and stderr. Blocks."""
        if kill and self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self.stdout.close()
        self.err.seek(0)
        err = self.err.read().decode(errors="replace").strip()
        self.err.close()
        return code, err

    async def chunks(self) -> AsyncIterator[bytes]:
        """tar's output through Python, compressed as `encoding` says (the reads run in threads). A tar that
        failed raises RuntimeError after its last byte; stopping early kills tar."""
        comp = compressor(self.encoding)
        done = False
        try:
            while chunk := await asyncio.to_thread(self.read_block):
                yield comp.compress(chunk) if comp else chunk
            if comp:
                yield comp.flush()
            done = True
            code, err = await asyncio.to_thread(self.reap, False)
            if code != 0:
                LOG.error("stream-out failed", handle=self.handle, path=self.sub or ".", error=err)
                raise RuntimeError(f"tar of {self.what} failed: {err}")
        finally:
            if not done:
                await asyncio.to_thread(self.reap, True)
