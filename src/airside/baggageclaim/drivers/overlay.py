"""``overlay``: overlayfs. A root volume is a plain directory; a copy-on-write child is an overlay
mount whose lower dirs are its ancestors' layers (the chain is flattened, so a child of a child mounts
``parent-upper:grandparent-upper:…:root``) and whose upper/work dirs sit in its own volume directory.

Each volume directory holds ``chain`` (ancestor handles, nearest first, one per line). Layers are
found under ``<root>/live/<handle>``: ancestors are live while they have children.

overlayfs cannot use an overlay filesystem as upper dir (a container's own root): `setup` probes a
real mount in the volume dir and fails with the fix when that does not work.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from airside.baggageclaim import mounts
from airside.baggageclaim.driver import DATA, DataDir, VolumeDriver
from airside.baggageclaim.errors import DriverUnavailable
from airside.core import log

LOG = log.get("airside.baggageclaim.overlay")
UPPER, WORK, CHAIN = "upper", "work", "chain"


def probe(volumes_dir: Path) -> str | None:
    """Mounts a throw-away overlay in volumes_dir and writes through it. None if that works, else why not."""
    volumes_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".overlay-probe-", dir=volumes_dir))
    try:
        for d in ("lower", UPPER, WORK, "merged"):
            (tmp / d).mkdir()
        (tmp / "lower" / "f").write_text("lower")
        try:
            mounts.mount("overlay", tmp / "merged", "overlay",
                         f"lowerdir={tmp / 'lower'},upperdir={tmp / UPPER},workdir={tmp / WORK}")
        except OSError as e:
            fstype = mounts.fs_type(volumes_dir)
            on = "an overlay filesystem, such as a container's root" if fstype == "overlay" else fstype
            return f"mounting overlay in {volumes_dir} (on {on}) failed: {os.strerror(e.errno or 0)}"
        try:
            (tmp / "merged" / "f").write_text("upper")
            ok = (tmp / UPPER / "f").read_text() == "upper" and (tmp / "lower" / "f").read_text() == "lower"
        finally:
            mounts.umount(tmp / "merged", lazy=True)
        return None if ok else f"overlay in {volumes_dir} mounted but copy-on-write did not behave"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class OverlayDriver(DataDir):
    name = "overlay"

    def __init__(self) -> None:
        self.root: Path | None = None

    def setup(self, volumes_dir: Path) -> Path:
        why = probe(volumes_dir)
        if why is not None:
            raise DriverUnavailable(
                f"overlay driver unavailable: {why}. overlayfs needs its upper dir on a real filesystem, not on "
                "another overlay (such as a container's root): put the volume dir (--volumes-dir, AIRSIDE_VOLUMES_DIR) "
                "on tmpfs, ext4 or xfs (a mounted volume or an emptyDir), or start with --baggageclaim-driver naive"
            )
        self.root = volumes_dir
        return volumes_dir

    def _chain(self, dir: Path) -> list[str]:
        try:
            return (dir / CHAIN).read_text().split()
        except FileNotFoundError:
            return []

    def _layer(self, handle: str) -> Path:
        assert self.root is not None, "setup() first"
        live = self.root / "live" / handle
        return live / UPPER if (live / UPPER).is_dir() else live / DATA

    def _mount(self, dir: Path, chain: list[str]) -> None:
        lower = ":".join(str(self._layer(h)) for h in chain)
        opts = f"lowerdir={lower},upperdir={dir / UPPER},workdir={dir / WORK}"
        mounts.mount("overlay", dir / DATA, "overlay", opts)

    def recover(self, live_dirs: list[Path]) -> None:
        for dir in live_dirs:
            chain = self._chain(dir)
            if chain and not mounts.is_mount(dir / DATA):
                self._mount(dir, chain)
                LOG.info("re-mounted overlay volume", handle=dir.name, layers=len(chain))

    def create_volume(self, dir: Path) -> None:
        (dir / DATA).mkdir()

    def create_cow(self, dir: Path, parent_dir: Path) -> None:
        chain = [parent_dir.name, *self._chain(parent_dir)]
        for d in (UPPER, WORK, DATA):
            (dir / d).mkdir()
        (dir / CHAIN).write_text("\n".join(chain) + "\n")
        self._mount(dir, chain)

    def destroy(self, dir: Path) -> None:
        data = dir / DATA
        if mounts.is_mount(data):
            try:
                mounts.umount(data)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                LOG.warning("overlay busy, detaching it", handle=dir.name)
                mounts.umount(data, lazy=True)
        for d in (DATA, UPPER, WORK):
            shutil.rmtree(dir / d, ignore_errors=True)
        if os.path.lexists(dir / CHAIN):
            os.unlink(dir / CHAIN)


_: VolumeDriver = OverlayDriver()
