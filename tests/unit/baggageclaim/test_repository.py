"""The volume state machine with the naive driver on a plain directory: parents and children,
properties, TTL expiry, restart persistence and crash recovery (init/ and dead/ swept)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airside.baggageclaim.drivers.naive import NaiveDriver
from airside.baggageclaim.errors import BadStream, InvalidRequest, VolumeConflict, VolumeNotFound
from airside.baggageclaim.filesystem import Filesystem
from airside.baggageclaim.repository import Repository
from airside.baggageclaim.schemas import Strategy, VolumeSpec

from .tarballs import chunks, entry, tar_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def open_repo(root: Path, clock: Clock | None = None) -> Repository:
    driver = NaiveDriver()
    repo = Repository(Filesystem(driver.setup(root), driver), driver, clock=clock or Clock())
    repo.recover()
    return repo


def spec(handle: str, parent: str | None = None, **kw) -> VolumeSpec:
    return VolumeSpec(handle=handle, strategy=Strategy(type="cow" if parent else "empty", parent=parent), **kw)


def test_cow_child_is_a_copy_that_does_not_write_back(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    p = repo.create(spec("p"))
    Path(p.path, "f").write_text("parent")
    c1, c2 = repo.create(spec("c1", "p")), repo.create(spec("c2", "p"))
    Path(c1.path, "f").write_text("child")
    assert Path(p.path, "f").read_text() == "parent" and Path(c2.path, "f").read_text() == "parent"
    assert c1.parent == "p" and repo.children("p") == ["c1", "c2"]
    assert repo.size("c1") == len("child")


def test_destroying_a_parent_is_refused_unless_cascading(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    repo.create(spec("p"))
    repo.create(spec("c", "p"))
    repo.create(spec("g", "c"))
    with pytest.raises(VolumeConflict, match=r"'p' has children \(c\).*cascade"):
        repo.destroy("p")
    assert repo.destroy("p", cascade=True) == ["g", "c", "p"]
    assert repo.list() == [] and repo.destroy("p") == []  # a missing volume is already destroyed
    assert os.listdir(tmp_path / "live") == [] and os.listdir(tmp_path / "dead") == []


def test_bad_requests_name_what_was_wrong(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    with pytest.raises(VolumeNotFound, match="'nope'"):
        repo.create(spec("c", "nope"))
    with pytest.raises(InvalidRequest, match="strategy.parent"):
        repo.create(VolumeSpec(handle="x", strategy=Strategy(type="cow")))
    repo.create(spec("x"))
    with pytest.raises(VolumeConflict, match="'x' already exists"):
        repo.create(spec("x"))
    assert os.listdir(tmp_path / "init") == []


def test_properties_filter_the_list(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    repo.create(spec("a", properties={"build": "1", "kind": "input"}))
    repo.create(spec("b", properties={"build": "2", "kind": "input"}))
    repo.set_property("b", "build", "1")
    assert [v.handle for v in repo.list({"build": "1"})] == ["a", "b"]
    assert [v.handle for v in repo.list({"build": "1", "kind": "input"})] == ["a", "b"]
    assert repo.list({"build": "3"}) == []


def test_expired_volumes_are_destroyed_children_first_and_ttl_can_be_renewed(tmp_path: Path) -> None:
    clock = Clock()
    repo = open_repo(tmp_path, clock)
    repo.create(spec("p", ttl=10))
    repo.create(spec("c", "p", ttl=100))
    repo.create(spec("keep"))
    repo.create(spec("renewed", ttl=10))
    clock.now += 20
    repo.set_ttl("renewed", 30)
    assert repo.expire() == []  # p expired but its child still lives
    clock.now += 100
    assert sorted(repo.expire()) == ["c", "p", "renewed"]
    assert [v.handle for v in repo.list()] == ["keep"]


def test_volumes_survive_a_restart_and_half_done_work_is_swept(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    v = repo.create(spec("v", properties={"a": "b"}, privileged=True, ttl=50))
    Path(v.path, "data").write_text("kept")
    # a crash mid-create and mid-destroy leaves init/ and dead/ entries behind
    (tmp_path / "init" / "half" / "volume").mkdir(parents=True)
    (tmp_path / "dead" / "gone" / "volume").mkdir(parents=True)
    again = open_repo(tmp_path)
    got = again.get("v")
    assert got.properties == {"a": "b"} and got.privileged and got.expires_at == v.expires_at
    assert Path(got.path, "data").read_text() == "kept"
    assert os.listdir(tmp_path / "init") == [] and os.listdir(tmp_path / "dead") == []


def test_import_only_makes_a_volume_from_a_good_stream(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    v = repo.import_(spec("imp"), chunks(tar_bytes([entry("a", data=b"1")])))
    assert Path(v.path, "a").read_text() == "1" and v.strategy == "import"
    with pytest.raises(InvalidRequest, match="'../x'"):
        repo.import_(spec("bad"), chunks(tar_bytes([entry("../x", data=b"1")])))
    with pytest.raises(VolumeNotFound):
        repo.get("bad")
    assert os.listdir(tmp_path / "init") == []


def test_a_broken_stream_into_a_non_empty_volume_marks_it_failed(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    v = repo.create(spec("v"))
    Path(v.path, "old").write_text("x")
    good = tar_bytes([entry("new", data=b"y" * 4000)])
    with pytest.raises(InvalidRequest):  # refused before anything is written: as it was, not failed
        repo.stream_in("v", "", chunks(tar_bytes([entry("/abs", data=b"1")])))
    assert repo.get("v").state == "ready"
    with pytest.raises(BadStream):
        repo.stream_in("v", "", chunks(good[:1000]))
    got = repo.get("v")
    assert got.state == "failed" and "'new'" in got.failure
    with pytest.raises(VolumeConflict, match="marked failed"):
        repo.create(spec("child", "v"))
    assert open_repo(tmp_path).get("v").state == "failed"  # the mark is on disk
