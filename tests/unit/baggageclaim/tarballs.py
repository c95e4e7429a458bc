"""Building tar streams (hostile or not) for volume tests."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path


def entry(name: str, kind: str = "file", data: bytes = b"", link: str = "", mode: int | None = None,
          uid: int = 0, gid: int = 0, devmajor: int = 1, devminor: int = 3) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
               "fifo": tarfile.FIFOTYPE}[kind]
    ti.linkname, ti.uid, ti.gid, ti.mtime = link, uid, gid, 1_700_000_000
    ti.devmajor, ti.devminor = devmajor, devminor
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    if kind == "file":
        ti.size = len(data)
    return ti, data


def tar_bytes(entries: Iterable[tuple[tarfile.TarInfo, bytes]], truncate: int | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    raw = buf.getvalue()
    return raw[:truncate] if truncate is not None else raw


def chunks(raw: bytes, size: int = 4096) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def sparse_tar(src: Path, before: bytes) -> bytes:
    """GNU tar --sparse of three members: `before` (these bytes), a 1 MiB sparse file, `z-after`."""
    src.mkdir()
    (src / "before").write_bytes(before)
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    (src / "z-after").write_text("a")
    return subprocess.run(["tar", "--sparse", "-C", str(src), "-cf", "-", "before", "sparse", "z-after"],
                          check=True, capture_output=True).stdout
