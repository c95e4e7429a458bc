"""``naive``: plain directories; a copy-on-write child is a full copy. Works on any filesystem.

The copy is GNU ``cp -a`` (``--reflink=auto``): it keeps modes, owners, timestamps, symlinks, hard
links, special files and xattrs where the filesystem has them, and shares extents where it can."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from airside.baggageclaim.driver import DATA, DataDir, VolumeDriver
from airside.baggageclaim.errors import DriverUnavailable


class NaiveDriver(DataDir):
    name = "naive"

    def setup(self, volumes_dir: Path) -> Path:
        if shutil.which("cp") is None:
            raise DriverUnavailable("the naive driver needs GNU cp (coreutils) on PATH")
        volumes_dir.mkdir(parents=True, exist_ok=True)
        return volumes_dir

    def recover(self, live_dirs: list[Path]) -> None:
        """Nothing to do: naive volumes are plain directories."""

    def create_volume(self, dir: Path) -> None:
        (dir / DATA).mkdir()

    def create_cow(self, dir: Path, parent_dir: Path) -> None:
        res = subprocess.run(
            ["cp", "-a", "--reflink=auto", "-T", str(parent_dir / DATA), str(dir / DATA)],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise OSError(f"copying {parent_dir / DATA} to {dir / DATA} failed: {res.stderr.strip()}")

    def destroy(self, dir: Path) -> None:
        shutil.rmtree(dir / DATA, ignore_errors=True)


_: VolumeDriver = NaiveDriver()
