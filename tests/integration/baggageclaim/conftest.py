"""Real filesystems for volume tests (root): tmpfs, overlay and loop-mounted btrfs prepared here,
and every mount under the test's directory removed afterwards, even when the test failed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from airside.baggageclaim import mounts
from airside.baggageclaim.server import BackgroundServer
from airside.config import Settings

TOKEN = "test-token"


def unmount_all(path: Path) -> None:
    for point in reversed(mounts.mounts_under(path)):
        subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, with every mount below it undone at the end."""
    try:
        yield tmp_path
    finally:
        unmount_all(tmp_path)


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def tmpfs(mounted: Path) -> Path:
    needs_root()
    d = mounted / "tmpfs"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(d)], check=True)
    return d


@pytest.fixture
def btrfs_fs(mounted: Path) -> Path:
    """A btrfs filesystem on a loop-mounted image file."""
    needs_root()
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("btrfs-progs not installed (apt-get install btrfs-progs)")
    img, d = mounted / "fs.img", mounted / "btrfs"
    d.mkdir()
    with open(img, "wb") as f:
        f.truncate(400 << 20)
    subprocess.run(["mkfs.btrfs", "-q", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(d)], check=True)
    return d


@pytest.fixture
def overlay_root(mounted: Path) -> Path:
    """A directory on an overlay mount, like a container's own root file system."""
    needs_root()
    base = mounted / "ovl"
    for p in ("lower", "upper", "work", "merged"):
        (base / p).mkdir(parents=True)
    mounts.mount("overlay", base / "merged", "overlay",
                 f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}")
    return base / "merged"


def settings_for(volumes_dir: Path, driver: str = "detect", **kw: object) -> Settings:
    return Settings(volumes_dir=volumes_dir, baggageclaim_driver=driver, baggageclaim_bind_port=0,
                    baggageclaim_token=TOKEN, data_dir=volumes_dir.parent / "data", log_level="warning",
                    **kw)


@pytest.fixture
def server_factory(mounted: Path) -> Iterator:
    servers: list[BackgroundServer] = []

    def make(volumes_dir: Path, driver: str = "detect", **kw: object) -> BackgroundServer:
        s = BackgroundServer(settings_for(volumes_dir, driver, **kw)).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()
