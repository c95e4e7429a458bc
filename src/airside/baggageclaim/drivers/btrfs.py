"""``btrfs``: every volume is a btrfs subvolume; a copy-on-write child is a snapshot of its parent.

When the volume dir is not on btrfs, `setup` makes a sparse image file ``<volumes_dir>/btrfs.img``
(``baggageclaim_btrfs_image_mib``), formats it and loop-mounts it at ``<volumes_dir>/btrfs``, which then
holds init/live/dead. After a reboot the same image is mounted again. Needs btrfs-progs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from airside.baggageclaim import mounts
from airside.baggageclaim.driver import DATA, DataDir, VolumeDriver
from airside.baggageclaim.errors import DriverUnavailable
from airside.core import log

LOG = log.get("airside.baggageclaim.btrfs")
IMAGE, MOUNT = "btrfs.img", "btrfs"


def _run(*args: str) -> str:
    res = subprocess.run(list(args), capture_output=True, text=True)
    if res.returncode != 0:
        raise OSError(f"`{' '.join(args)}` failed: {(res.stderr or res.stdout).strip()}")
    return res.stdout


def image_in(volumes_dir: Path) -> Path:
    return volumes_dir / IMAGE


class BtrfsDriver(DataDir):
    name = "btrfs"

    def __init__(self, image_mib: int = 20480) -> None:
        self.image_mib = image_mib

    def setup(self, volumes_dir: Path) -> Path:
        if shutil.which("btrfs") is None or shutil.which("mkfs.btrfs") is None:
            raise DriverUnavailable(
                "btrfs driver needs btrfs-progs (apt-get install btrfs-progs), or start with "
                "--baggageclaim-driver overlay or naive"
            )
        volumes_dir.mkdir(parents=True, exist_ok=True)
        if mounts.fs_type(volumes_dir) == "btrfs":
            return volumes_dir
        mnt, image = volumes_dir / MOUNT, image_in(volumes_dir)
        mnt.mkdir(exist_ok=True)
        if mounts.is_mount(mnt) and mounts.fs_type(mnt) == "btrfs":
            return mnt
        try:
            if not image.exists():
                with open(image, "wb") as f:
                    f.truncate(self.image_mib << 20)
                _run("mkfs.btrfs", "-q", str(image))
                LOG.info("created btrfs image", image=str(image), mib=self.image_mib)
            _run("mount", "-o", "loop", str(image), str(mnt))
        except OSError as e:
            raise DriverUnavailable(
                f"btrfs driver cannot loop-mount {image} at {mnt}: {e}. It needs root and loop devices; "
                "put the volume dir on btrfs, or start with --baggageclaim-driver overlay or naive"
            ) from e
        LOG.info("mounted btrfs image", image=str(image), mount=str(mnt))
        return mnt

    def recover(self, live_dirs: list[Path]) -> None:
        """Nothing to do: subvolumes persist in the filesystem (setup re-mounted the image)."""

    def create_volume(self, dir: Path) -> None:
        _run("btrfs", "subvolume", "create", str(dir / DATA))

    def create_cow(self, dir: Path, parent_dir: Path) -> None:
        _run("btrfs", "subvolume", "snapshot", str(parent_dir / DATA), str(dir / DATA))

    def destroy(self, dir: Path) -> None:
        data = dir / DATA
        if not os.path.lexists(data):
            return
        if data.is_dir() and not data.is_symlink() and os.stat(data).st_ino == 256:  # a subvolume root
            _run("btrfs", "subvolume", "delete", str(data))
        else:
            shutil.rmtree(data, ignore_errors=True)

    def unmount(self, volumes_dir: Path) -> None:
        """Unmount a loop image set up by `setup` (tests, tidy shutdown); volumes stay in the image."""
        mnt = volumes_dir / MOUNT
        if mounts.is_mount(mnt):
            mounts.umount(mnt)


_: VolumeDriver = BtrfsDriver()
