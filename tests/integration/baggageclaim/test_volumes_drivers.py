"""Every driver on a real filesystem (root): copy-on-write semantics, chained children, restart and
reboot recovery, driver choice at start (detect, nested overlay, the btrfs loop image)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airside.baggageclaim import detect, mounts
from airside.baggageclaim.driver import VolumeDriver
from airside.baggageclaim.errors import DriverUnavailable
from airside.baggageclaim.filesystem import Filesystem
from airside.baggageclaim.repository import Repository
from airside.baggageclaim.schemas import Strategy, VolumeSpec

from .conftest import unmount_all

pytestmark = pytest.mark.root


def spec(handle: str, parent: str | None = None) -> VolumeSpec:
    return VolumeSpec(handle=handle, strategy=Strategy(type="cow" if parent else "empty", parent=parent))


def open_repo(name: str, volumes_dir: Path) -> Repository:
    driver, root = detect.choose(name, volumes_dir, btrfs_image_mib=300)
    repo = Repository(Filesystem(root, driver), driver)
    repo.recover()
    return repo


@pytest.fixture(params=["naive", "overlay", "btrfs"])
def volumes_dir(request: pytest.FixtureRequest) -> tuple[str, Path]:
    fs = request.getfixturevalue("btrfs_fs" if request.param == "btrfs" else "tmpfs")
    return request.param, fs / "volumes"


def test_every_driver_satisfies_the_interface() -> None:
    for name in detect.NAMES:
        assert isinstance(detect.make(name), VolumeDriver)


def test_cow_children_see_the_parent_and_write_only_to_themselves(volumes_dir: tuple[str, Path]) -> None:
    name, vdir = volumes_dir
    repo = open_repo(name, vdir)
    assert repo.driver.name == name
    p = Path(repo.create(spec("p")).path)
    (p / "shared").write_text("from parent")
    (p / "dir").mkdir()
    (p / "dir" / "nested").write_text("n")
    os.symlink("shared", p / "link")
    c1, c2 = Path(repo.create(spec("c1", "p")).path), Path(repo.create(spec("c2", "p")).path)
    (c1 / "shared").write_text("from c1")
    (c1 / "new").write_text("only c1")
    (c1 / "dir" / "nested").unlink()
    assert (p / "shared").read_text() == "from parent" and (c2 / "shared").read_text() == "from parent"
    assert not (p / "new").exists() and not (c2 / "new").exists()
    assert (p / "dir" / "nested").exists() and (c2 / "dir" / "nested").exists()
    assert os.readlink(c2 / "link") == "shared"
    g = Path(repo.create(spec("g", "c1")).path)  # a child of a child
    assert (g / "shared").read_text() == "from c1" and (g / "new").read_text() == "only c1"
    assert not (g / "dir" / "nested").exists()
    (g / "shared").write_text("from g")
    assert (c1 / "shared").read_text() == "from c1" and (p / "shared").read_text() == "from parent"
    assert repo.size("p") == len("from parent") + 1
    assert repo.destroy("p", cascade=True) == ["g", "c1", "c2", "p"]
    assert mounts.mounts_under(repo.fs.root / "live") == []
    assert os.listdir(repo.fs.root / "live") == []


def test_volumes_come_back_after_a_reboot(volumes_dir: tuple[str, Path]) -> None:
    name, vdir = volumes_dir
    repo = open_repo(name, vdir)
    (Path(repo.create(spec("p")).path) / "f").write_text("p")
    (Path(repo.create(spec("c", "p")).path) / "f").write_text("c")
    (Path(repo.create(spec("g", "c")).path) / "g").write_text("g")
    # a reboot: the overlay mounts are gone (the btrfs fixture's filesystem stays mounted, like an fstab entry)
    for point in reversed(mounts.mounts_under(repo.fs.root / "live")):
        mounts.umount(Path(point))
    again = open_repo("detect", vdir)
    assert again.driver.name == name  # the volume dir remembers its driver
    assert [v.handle for v in again.list()] == ["p", "c", "g"]
    assert (Path(again.get("c").path) / "f").read_text() == "c"
    assert (Path(again.get("g").path) / "f").read_text() == "c" and (Path(again.get("g").path) / "g").read_text() == "g"
    assert (Path(again.get("p").path) / "f").read_text() == "p"
    open_repo(name, vdir)  # a restart without a reboot: mounts are still there and stay as they are
    assert (Path(again.get("g").path) / "g").read_text() == "g"


def test_detect_prefers_btrfs_then_overlay(btrfs_fs: Path, tmpfs: Path) -> None:
    assert detect.detect(btrfs_fs / "v")[0] == "btrfs"
    name, why = detect.detect(tmpfs / "v")
    assert name == "overlay" and "tmpfs" in why


def test_on_an_overlay_root_detect_falls_back_and_explicit_overlay_names_the_fix(overlay_root: Path) -> None:
    name, why = detect.detect(overlay_root / "volumes")
    assert name == "naive" and "overlay" in why
    repo = open_repo("detect", overlay_root / "volumes2")
    assert repo.driver.name == "naive"
    with pytest.raises(DriverUnavailable) as e:
        open_repo("overlay", overlay_root / "volumes3")
    msg = str(e.value)
    assert "on an overlay filesystem" in msg and "tmpfs, ext4 or xfs" in msg and "--baggageclaim-driver naive" in msg


def test_btrfs_driver_makes_and_remounts_its_own_image_when_the_dir_is_not_btrfs(tmpfs: Path) -> None:
    vdir = tmpfs / "volumes"
    try:
        repo = open_repo("btrfs", vdir)
        assert repo.fs.root == vdir / "btrfs" and mounts.fs_type(vdir / "btrfs") == "btrfs"
        assert (vdir / "btrfs.img").stat().st_blocks * 512 < (300 << 20)  # sparse
        (Path(repo.create(spec("p")).path) / "f").write_text("x")
        (Path(repo.create(spec("c", "p")).path) / "f").write_text("y")
        unmount_all(vdir / "btrfs")  # reboot
        again = open_repo("detect", vdir)
        assert again.driver.name == "btrfs"
        assert (Path(again.get("p").path) / "f").read_text() == "x"
        assert (Path(again.get("c").path) / "f").read_text() == "y"
    finally:
        unmount_all(vdir)


def test_a_dir_made_by_one_driver_refuses_another(tmpfs: Path) -> None:
    repo = open_repo("overlay", tmpfs / "v")
    repo.create(spec("p"))
    with pytest.raises(DriverUnavailable, match="made by the overlay driver, not naive.*--baggageclaim-driver overlay"):
        open_repo("naive", tmpfs / "v")


def test_airside_baggageclaim_refuses_overlay_on_an_overlay_root_at_start(overlay_root: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "airside.cli", "baggageclaim", "--baggageclaim-driver", "overlay",
         "--volumes-dir", str(overlay_root / "v"), "--data-dir", str(overlay_root / "data"),
         "--baggageclaim-bind-port", "0"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "overlay driver unavailable" in res.stderr and "--baggageclaim-driver naive" in res.stderr
