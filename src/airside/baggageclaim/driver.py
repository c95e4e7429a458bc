"""The `VolumeDriver` interface: the mechanism under the volume state machine.

A driver only knows volume directories (``<root>/<state>/<handle>/``) and the data directory it
keeps inside them (``path(dir)``); the on-disk states (init/live/dead), metadata, locking and streaming
live above it in `filesystem.py` and `repository.py`. Drivers sit side by side in
`airside.baggageclaim.drivers` and never import each other; choosing one (``detect``) is done in
`airside.baggageclaim.detect`.

Contract, in the order calls happen:

1. ``setup(volumes_dir) -> root``: once, at start, before anything else. Checks the driver can work
   there (raises `DriverUnavailable` naming the fix) and returns the directory that holds
   ``init/``, ``live/`` and ``dead/`` (the btrfs driver may loop-mount an image and return its mount).
2. ``recover(live_dirs)``: once, after setup: make every live volume usable again after a restart
   or reboot (the overlay driver re-mounts children, parents before children). Idempotent.
3. ``create_volume(dir)`` / ``create_cow(dir, parent_dir)``: make the data of a new volume in an
   *init* directory (``dir`` exists and is empty). The parent of a copy-on-write child is *live*,
   and the caller keeps it alive (it refuses to destroy a parent with children).
4. ``path(dir)``: where a volume's data is; pure, no I/O.
5. ``size(dir)``: bytes of the files visible in the volume (hard links counted once).
6. ``destroy(dir)``: remove the data and anything mounted for it, leaving ``dir`` removable by
   ``rm -r``. Idempotent: destroying twice, or a half-created volume, is success.

Calls on different volumes may run concurrently (the server runs them in threads); the caller
serialises calls on one volume and never destroys a parent before its children.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

DATA = "volume"  # the data directory inside a volume directory


@runtime_checkable
class VolumeDriver(Protocol):
    name: str

    def setup(self, volumes_dir: Path) -> Path: ...

    def recover(self, live_dirs: list[Path]) -> None: ...

    def create_volume(self, dir: Path) -> None: ...

    def create_cow(self, dir: Path, parent_dir: Path) -> None: ...

    def path(self, dir: Path) -> Path: ...

    def size(self, dir: Path) -> int: ...

    def destroy(self, dir: Path) -> None: ...


class DataDir:
    """The layout every driver shares: a volume's data lives in `<volume dir>/volume`."""

    def path(self, dir: Path) -> Path:
        return dir / DATA

    def size(self, dir: Path) -> int:
        return tree_size(dir / DATA)


def tree_size(path: Path) -> int:
    """Apparent size of the regular files under path, counting each inode once, never following links."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += st.st_size
    return total
