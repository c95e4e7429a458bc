"""The writing side of the fast path: GNU ``tar x`` into the destination, fed through a pipe.

`TarWriter` gathers header blocks and member data (`add`) and writes them into tar's stdin with
``writev`` (`flush`); `StagedWriter` is the one of `feeds.SourceFeed`, which also splices member data
from a `Movable` (a `feeds.Source`) through a stage pipe of its own. `finish` ends the archive and
raises OSError with tar's message when tar failed (its non-fatal complaints, `NONFATAL`, aside).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Protocol

from airside.baggageclaim.tarpipe.members import BLOCK, ZERO_BLOCK

IOV_MAX = 1024
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
RECORD = 256 << 10  # tar x reads records this big: one wake-up of its writer per record, not per 10 KiB
STAGE = 256 << 10  # `StagedWriter` moves its pipe on into tar's once it holds this much
# tar's complaints that tarfile only logs (its errorlevel 1): owners, modes and times it could not set
NONFATAL = re.compile(r"Cannot change (ownership|mode)|Cannot (utime|change times)|implausibly old time stamp|"
                      r"time stamp .* in the future|Exiting with failure status due to previous errors")

Buffer = bytes | bytearray | memoryview


@functools.cache
def gnu_tar() -> bool:
    """Whether `tar` is GNU tar (the fast path relies on its options and its way of replacing files)."""
    try:
        out = subprocess.run(["tar", "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.startswith(b"tar (GNU tar)")


class Movable(Protocol):
    """What `StagedWriter.splice_from` moves bytes from (a `feeds.Source`)."""

    def move(self, fd: int, n: int) -> int:
        """Moves up to n bytes (at least one) into fd; 0 at the end of the stream."""
        ...


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
        self.stdin: IO[bytes] = self.proc.stdin
        self.fd = self.stdin.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, F_SETPIPE_SZ, PIPE_SIZE)
        self.pending: list[Buffer] = []
        self.size = 0  # bytes pending

    def add(self, data: Buffer) -> None:
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

    def _writev(self, batch: list[Buffer]) -> int:
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
            self.stdin.close()
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
                self.stdin.close()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.err.close()


class StagedWriter(TarWriter):
    """The `TarWriter` of `feeds.SourceFeed`: headers and spliced data gather in a pipe of this writer's own
    and go on to tar's pipe in one splice per STAGE bytes. (A write into tar's pipe wakes tar synchronously,
    which pulls it onto this thread's CPU; a splice does not, and tar gets fewer, bigger wake-ups.)"""

    def __init__(self, dest: Path) -> None:
        super().__init__(dest)
        self.tar_fd = self.fd
        self.stage_r, self.fd = os.pipe()  # add/flush and splice_from write into the stage
        os.set_blocking(self.fd, False)  # never wait on it: this thread is its reader
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, F_SETPIPE_SZ, PIPE_SIZE)
        self.staged = 0

    def _writev(self, batch: list[Buffer]) -> int:
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

    def splice_from(self, src: Movable, n: int) -> int:
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
