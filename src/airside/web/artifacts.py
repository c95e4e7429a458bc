"""Build artifacts on web's disk: uploaded inputs and produced outputs, as tar streams.

Layout: `<root>/<build id>/<inputs|outputs>/<name>.tar[.zst]`. Streams are written to a temporary file
and renamed into place, so a reader never sees half an artifact and a failed upload leaves nothing.
Expired builds' directories are removed by `sweep`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

ENCODINGS = {"identity": ".tar", "zstd": ".tar.zst"}


class TooLarge(Exception):
    pass


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, build_id: int, kind: str) -> Path:
        return self.root / str(build_id) / kind

    def find(self, build_id: int, kind: str, name: str) -> tuple[Path, str] | None:
        for encoding, suffix in ENCODINGS.items():
            p = self._dir(build_id, kind) / f"{name}{suffix}"
            if p.exists():
                return p, encoding
        return None

    @contextlib.contextmanager
    def _writer(self, build_id: int, kind: str, name: str, encoding: str, limit: int) -> Iterator[Callable[[bytes], None]]:
        """Yields a write(chunk) function; on success the artifact replaces any earlier one atomically."""
        d = self._dir(build_id, kind)
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"{name}{ENCODINGS[encoding]}"
        tmp = d / f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        size = 0
        try:
            with open(tmp, "wb") as f:

                def write(chunk: bytes) -> None:
                    nonlocal size
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"artifact {name!r} is larger than {limit} bytes")
                    f.write(chunk)

                yield write
            for other in ENCODINGS.values():
                (d / f"{name}{other}").unlink(missing_ok=True)
            tmp.replace(final)
        finally:
            tmp.unlink(missing_ok=True)

    async def write(self, build_id: int, kind: str, name: str, encoding: str, body: AsyncIterator[bytes],
                    limit: int) -> None:
        with self._writer(build_id, kind, name, encoding, limit) as write:
            async for chunk in body:
                write(chunk)

    def write_iter(self, build_id: int, kind: str, name: str, encoding: str, body: Iterable[bytes], limit: int) -> None:
        with self._writer(build_id, kind, name, encoding, limit) as write:
            for chunk in body:
                write(chunk)

    @staticmethod
    def read(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
        with open(path, "rb") as f:
            while data := f.read(chunk):
                yield data

    def delete(self, build_id: int) -> None:
        shutil.rmtree(self.root / str(build_id), ignore_errors=True)
