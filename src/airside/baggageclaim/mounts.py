"""Mount helpers shared by drivers and the driver probe: mount(2)/umount2(2) through libc, and the
filesystem type of a path from /proc/self/mountinfo."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2


def mount(source: str, target: Path, fstype: str, options: str = "", flags: int = 0) -> None:
    rc = _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags, options.encode() or None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t {fstype} on {target}: {os.strerror(err)}")


def umount(target: Path, lazy: bool = False) -> None:
    rc = _libc.umount2(os.fsencode(target), MNT_DETACH if lazy else 0)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mount_points() -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            out.append((_unescape(left.split()[4]), right.split()[0]))
    return out


def fs_type(path: Path) -> str:
    """Filesystem type of the mount holding path (the nearest existing ancestor)."""
    p = Path(os.path.realpath(path))
    while not p.exists():
        p = p.parent
    best, kind = "", "unknown"
    for point, fstype in mount_points():
        if (str(p) == point or str(p).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fstype
    return kind


def is_mount(path: Path) -> bool:
    return os.path.ismount(path)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest last (unmount in reverse)."""
    root = os.path.realpath(path).rstrip("/")
    return [p for p, _ in mount_points() if p == root or p.startswith(root + "/")]
