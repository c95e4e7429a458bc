"""Persistent network namespaces as files: made before a container exists, joined by runc, removed after.

`create(path)` makes a new network namespace and bind-mounts it on `path` (util-linux `unshare
--net=PATH`), so it lives without a process in it: runc joins it (`linux.namespaces[].path`) and CNI
plugins configure it (`CNI_NETNS`; its lo is down until CNI's loopback plugin brings it up). `remove(path)` unmounts and deletes the file; idempotent.
`mounted(under)` lists the namespace files mounted below a directory (what a crash may leave behind).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
from pathlib import Path

MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NetnsError(Exception):
    pass


def create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    r = subprocess.run(["unshare", f"--net={path}", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        path.unlink(missing_ok=True)
        raise NetnsError(f"could not create a network namespace at {path}: {r.stderr.strip() or r.returncode}")


def remove(path: Path) -> None:
    if _libc.umount2(os.fsencode(str(path)), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # not mounted / gone: nothing to unmount
            raise NetnsError(f"could not unmount the network namespace {path}: {os.strerror(e)}")
    path.unlink(missing_ok=True)


def mounted(under: Path) -> list[Path]:
    """Network namespace files (nsfs mounts) mounted below `under`."""
    prefix = str(under.resolve()).rstrip("/") + "/"
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right.startswith("nsfs "):
            continue
        point = fields[4].replace("\\040", " ")
        if point.startswith(prefix):
            found.append(Path(point))
    return found
