"""Choosing the volume driver (``detect``) and checking an explicit choice, at start.

detect: btrfs if the volume dir is on btrfs (or holds the btrfs image of an earlier run), else overlay
if an overlay really mounts in the volume dir (a probe mount, so an overlay root such as a container's
filesystem falls back), else naive; it logs why. A volume dir remembers the driver that made its
volumes (``<volumes_dir>/driver``): detect keeps using it, and an explicit different driver is refused
while volumes exist.
"""

from __future__ import annotations

from pathlib import Path

from airside.baggageclaim import mounts
from airside.baggageclaim.driver import VolumeDriver
from airside.baggageclaim.drivers import btrfs, naive, overlay
from airside.baggageclaim.errors import DriverUnavailable
from airside.core import log

LOG = log.get("airside.baggageclaim.detect")
NAMES = ("naive", "overlay", "btrfs")
RECORD = "driver"


def make(name: str, btrfs_image_mib: int = 20480) -> VolumeDriver:
    if name == "naive":
        return naive.NaiveDriver()
    if name == "overlay":
        return overlay.OverlayDriver()
    if name == "btrfs":
        return btrfs.BtrfsDriver(btrfs_image_mib)
    raise DriverUnavailable(f"unknown volume driver {name!r}: choose detect, {', '.join(NAMES)}")


def recorded(volumes_dir: Path) -> str | None:
    try:
        name = (volumes_dir / RECORD).read_text().strip()
    except FileNotFoundError:
        return None
    return name if name in NAMES else None


def record(volumes_dir: Path, name: str) -> None:
    (volumes_dir / RECORD).write_text(name + "\n")


def has_volumes(root: Path) -> bool:
    return any((root / s).is_dir() and any((root / s).iterdir()) for s in ("init", "live", "dead"))


def detect(volumes_dir: Path) -> tuple[str, str]:
    """(driver name, why) for volumes_dir."""
    fstype = mounts.fs_type(volumes_dir)
    if fstype == "btrfs":
        return "btrfs", "the volume dir is on btrfs"
    if btrfs.image_in(volumes_dir).exists():
        return "btrfs", f"the volume dir holds a btrfs image ({btrfs.image_in(volumes_dir)}) from an earlier run"
    why = overlay.probe(volumes_dir)
    if why is None:
        return "overlay", f"an overlay mounts in the volume dir ({fstype})"
    return "naive", f"overlay unavailable: {why}"


def choose(name: str, volumes_dir: Path, btrfs_image_mib: int = 20480) -> tuple[VolumeDriver, Path]:
    """The driver for `name` (or detect), set up in volumes_dir: (driver, root of init/live/dead)."""
    volumes_dir.mkdir(parents=True, exist_ok=True)
    before = recorded(volumes_dir)
    if name == "detect":
        if before is not None:
            name, why = before, "volumes in this dir were made by it"
        else:
            name, why = detect(volumes_dir)
        LOG.info("detected volume driver", driver=name, why=why, volumes_dir=str(volumes_dir))
    elif before is not None and before != name:
        driver = make(before, btrfs_image_mib)
        root = driver.setup(volumes_dir)
        if has_volumes(root):
            raise DriverUnavailable(
                f"volumes in {volumes_dir} were made by the {before} driver, not {name}: start with "
                f"--baggageclaim-driver {before} (or detect), or use an empty volume dir"
            )
    driver = make(name, btrfs_image_mib)
    root = driver.setup(volumes_dir)
    record(volumes_dir, name)
    return driver, root
