"""Build artifacts on web's disk: uploaded inputs and produced outputs, as tar streams.

Layout: `<root>/<build id>/<inputs|outputs>/<name>.tar[.zst]`. Streams are written to a temporary file
and renamed into place, so a reader never sees half an artifact and a failed upload leaves nothing.
Expired builds' directories are removed by `sweep`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
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

    def link(self, src: tuple[int, str, str], build_id: int, kind: str, name: str) -> None:
        """Makes artifact `src` (build id, kind, name) also build `build_id`'s `kind`/`name` (a pipeline step's
        output becoming the next step's input): a hard link, a copy across file systems. FileNotFoundError
        when `src` is gone (expired after artifact_ttl, or its build was deleted)."""
        found = self.find(*src)
        if found is None:
            raise FileNotFoundError(f"artifact {src[2]!r} of build {src[0]} is no longer stored")
        path, encoding = found
        d = self._dir(build_id, kind)
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"{name}{ENCODINGS[encoding]}"
        tmp = d / f".{name}.{os.getpid()}.{time.monotonic_ns()}.link"
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        for other in ENCODINGS.values():
            (d / f"{name}{other}").unlink(missing_ok=True)
        tmp.replace(final)

    def read_file(self, src: tuple[int, str, str], member: str, limit: int = 1 << 20) -> bytes:
        """The content of file `member` (a path inside the artifact) of artifact `src`, at most `limit` bytes.
        FileNotFoundError names what is missing; ValueError when it is not a regular file or too large."""
        found = self.find(*src)
        if found is None:
            raise FileNotFoundError(f"artifact {src[2]!r} of build {src[0]} is no longer stored")
        path, encoding = found
        want = member.strip("/").removeprefix("./")
        with open(path, "rb") as raw:
            stream = raw
            if encoding == "zstd":
                import zstandard

                stream = zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[assignment]
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for info in tar:
                    if info.name.strip("/").removeprefix("./") != want:
                        continue
                    if not info.isfile():
                        raise ValueError(f"{src[2]}/{want} is not a regular file")
                    if info.size > limit:
                        raise ValueError(f"{src[2]}/{want} is larger than {limit} bytes")
                    f = tar.extractfile(info)
                    assert f is not None
                    return f.read()
        raise FileNotFoundError(f"artifact {src[2]!r} has no file {want!r}")

    def delete(self, build_id: int) -> None:
        shutil.rmtree(self.root / str(build_id), ignore_errors=True)
