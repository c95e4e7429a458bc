"""Stream-in safety: hostile tarballs are refused with an error naming the entry, nothing is written
outside the volume, and a refused stream leaves the volume as it was (or it is marked failed)."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest
import zstandard

from airside.baggageclaim import streaming
from airside.baggageclaim.errors import BadStream, InvalidRequest, StreamTooLarge
from tests.unit.test_paths import HOSTILE

from .tarballs import chunks, entry, tar_bytes

LIMIT = 1 << 30




# stream-in's paths: GNU tar x fed by tarpipe (raw, zstd), tarfile (raw without tar, and every gzip stream)
PATHS = {"tarpipe": ("raw", True), "tarpipe-zstd": ("zstd", True), "tarfile": ("raw", False),
         "tarfile-gzip": ("gzip", None)}


def encode(raw: bytes, encoding: str) -> bytes:
    return {"raw": raw, "zstd": zstandard.ZstdCompressor().compress(raw), "gzip": gzip.compress(raw)}[encoding]


def extract(vol: Path, raw: bytes, sub: str = "", privileged: bool = False, **kw):
    return streaming.extract(chunks(raw), vol, sub, privileged=privileged, limit=kw.pop("limit", LIMIT), **kw)


def tree(p: Path) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(p):
        for n in dirs + files:
            full = Path(root) / n
            rel = str(full.relative_to(p))
            out[rel] = ("link:" + os.readlink(full)) if full.is_symlink() else ("dir" if full.is_dir() else full.read_text())
    return out


def test_round_trip_keeps_modes_symlinks_hardlinks_and_mtimes(vol: Path) -> None:
    raw = tar_bytes([entry("bin", "dir", mode=0o750), entry("bin/run", data=b"#!/bin/sh\n", mode=0o755),
                     entry("bin/ro", data=b"x", mode=0o400), entry("latest", "symlink", link="bin/run"),
                     entry("bin/again", "hardlink", link="bin/run", mode=0o755), entry("pipe", "fifo")])
    n, _ = extract(vol, raw)
    assert n == 6
    assert stat.S_IMODE(os.stat(vol / "bin").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(vol / "bin/run").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(vol / "bin/ro").st_mode) == 0o400
    assert os.readlink(vol / "latest") == "bin/run"
    assert os.stat(vol / "bin/again").st_ino == os.stat(vol / "bin/run").st_ino
    assert stat.S_ISFIFO(os.lstat(vol / "pipe").st_mode)
    assert os.stat(vol / "bin/run").st_mtime == 1_700_000_000
    out = b"".join(streaming.iter_tar(vol, "bin"))
    other = vol.parent / "other"
    other.mkdir()
    extract(other, out)
    assert tree(other) == {"run": "#!/bin/sh\n", "ro": "x", "again": "#!/bin/sh\n"}


def test_zstd_and_gzip_streams_into_a_sub_path(vol: Path) -> None:
    raw = tar_bytes([entry("a.txt", data=b"hello")])
    extract(vol, zstandard.ZstdCompressor().compress(raw), "deep/er", encoding="zstd")
    extract(vol, gzip.compress(raw), "gz", encoding="gzip")
    assert (vol / "deep/er/a.txt").read_text() == "hello" and (vol / "gz/a.txt").read_text() == "hello"


@pytest.mark.parametrize(
    ("entries", "named", "why"),
    [
        ([entry("../escape", data=b"x")], "../escape", "traversal"),
        ([entry("ok/../../escape", data=b"x")], "ok/../../escape", "traversal"),
        ([entry("/etc/passwd-airside-test", data=b"x")], "/etc/passwd-airside-test", "absolute path"),
        ([entry("up", "symlink", link="../outside")], "up", "points outside the volume"),
        ([entry("abs", "symlink", link="/etc")], "abs", "absolute path"),
        ([entry("a", "dir"), entry("a/b", "symlink", link="../../outside")], "a/b", "points outside"),
        ([entry("dot", "symlink", link="."), entry("dot/x", "symlink", link="../outside")], "dot/x", "parent dot is a symlink"),
        ([entry("inside", "symlink", link="."), entry("inside/f", data=b"x")], "inside/f", "is a symlink"),
        ([entry("hl", "hardlink", link="../outside/f")], "hl", "traversal"),
        ([entry("hl", "hardlink", link="/etc/passwd")], "hl", "absolute path"),
        ([entry("s", "symlink", link="t"), entry("hl", "hardlink", link="s")], "hl", "not a regular file"),
        ([entry("null", "chr")], "null", "device node"),
        ([entry("disk", "blk")], "disk", "device node"),
        ([entry("d", "dir"), entry("d", data=b"x")], "d", "replace a directory"),
    ],
)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_hostile_entries_are_refused_naming_the_entry_and_nothing_lands(
        vol: Path, entries: list, named: str, why: str, path: str, handovers: list[str]) -> None:
    outside_before = sorted(os.listdir(vol.parent / "outside"))
    encoding, use_tar = PATHS[path]
    with pytest.raises(InvalidRequest) as e:
        extract(vol, encode(tar_bytes([entry("good.txt", data=b"fine"), *entries]), encoding), encoding=encoding,
                use_tar=use_tar)
    assert handovers == []  # the path named is the one that checked every entry
    assert repr(named) in e.value.message and why in e.value.message
    assert sorted(os.listdir(vol.parent / "outside")) == outside_before
    assert not (vol.parent / "escape").exists()
    assert list(vol.iterdir()) == []  # the volume was empty: it is empty again


def test_an_existing_symlink_in_the_volume_is_replaced_not_written_through(vol: Path) -> None:
    (vol.parent / "outside" / "secret").write_text("keep")
    os.symlink("../outside/secret", vol / "file")
    extract(vol, tar_bytes([entry("file", data=b"new")]))
    assert (vol.parent / "outside" / "secret").read_text() == "keep"
    assert not (vol / "file").is_symlink() and (vol / "file").read_text() == "new"


def test_an_existing_symlinked_directory_is_never_written_through(vol: Path) -> None:
    os.symlink("../outside", vol / "dir")
    with pytest.raises(InvalidRequest, match="'dir/f'.*parent dir is a symlink"):
        extract(vol, tar_bytes([entry("dir/f", data=b"x")]))
    with pytest.raises(InvalidRequest, match="path 'dir/sub': dir is a symlink"):
        extract(vol, tar_bytes([entry("f", data=b"x")]), "dir/sub")
    assert list((vol.parent / "outside").iterdir()) == []


def test_device_nodes_and_setuid_bits_only_in_privileged_volumes(vol: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making device nodes needs root")
    extract(vol, tar_bytes([entry("null", "chr"), entry("su", data=b"x", mode=0o4755),
                            entry("root", "symlink", link="/usr/bin")]), privileged=True)
    assert stat.S_ISCHR(os.lstat(vol / "null").st_mode)
    assert os.stat(vol / "su").st_mode & stat.S_ISUID
    plain = vol.parent / "plain"
    plain.mkdir()
    extract(plain, tar_bytes([entry("su", data=b"x", mode=0o4755)]))
    assert not os.stat(plain / "su").st_mode & stat.S_ISUID


def test_owners_are_kept_numerically(vol: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    extract(vol, tar_bytes([entry("f", data=b"x", uid=1234, gid=4321)]))
    st = os.stat(vol / "f")
    assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_body_past_the_limit_is_refused_naming_the_entry(vol: Path) -> None:
    raw = tar_bytes([entry("small", data=b"x"), entry("big", data=b"y" * 200_000)])
    with pytest.raises(StreamTooLarge) as e:
        extract(vol, raw, limit=100_000)
    assert "100000 bytes" in e.value.message and "'big'" in e.value.message
    assert list(vol.iterdir()) == []


def test_truncated_stream_is_a_bad_stream_and_a_non_empty_destination_needs_marking(vol: Path) -> None:
    (vol / "keep").write_text("old")
    raw = tar_bytes([entry("a", data=b"a" * 5000), entry("b", data=b"b" * 5000)], truncate=1500)
    with pytest.raises(BadStream) as e:
        extract(vol, raw)
    assert "'a'" in e.value.message
    assert e.value.restored is False  # the caller marks the volume failed
    with pytest.raises(BadStream):
        extract(vol, raw, "fresh")
    assert not (vol / "fresh").exists()  # a missing destination is removed again


def test_sub_path_rules(vol: Path) -> None:
    (vol / "f").write_text("x")
    for bad, why in [("../x", "traversal"), ("/abs", "absolute"), ("f/x", "not a directory")]:
        with pytest.raises(InvalidRequest, match=why):
            streaming.sub_path(vol, bad, must_exist=False)
    with pytest.raises(InvalidRequest, match="does not exist"):
        streaming.tar_command(vol, "missing")


def _pax_named(name: str, kind: str = "file", link: str = "") -> tuple:
    """An entry whose name (and link name) travel in PAX records, which carry any byte (a NUL too)."""
    ti, data = entry("placeholder", kind, data=b"x" if kind == "file" else b"", link="placeholder")
    ti.pax_headers = {"path": name, **({"linkpath": link} if link else {})}
    return ti, data


@pytest.mark.parametrize("use_tar", [True, False], ids=["tarpipe", "tarfile"])
@pytest.mark.parametrize("name", HOSTILE)
def test_the_shared_hostile_names_are_refused_as_entries_link_targets_and_sub_paths(
        vol: Path, name: str, use_tar: bool) -> None:
    """Stream-in splits names with core.paths.clean_parts: each of test_paths.HOSTILE is refused, named."""
    for hostile in ([_pax_named(name)], [entry("t", data=b"x"), _pax_named("hl", "hardlink", link=name)]):
        with pytest.raises(InvalidRequest) as e:
            extract(vol, tar_bytes(hostile), use_tar=use_tar)
        assert repr(name) in e.value.message
        assert list(vol.iterdir()) == []
    with pytest.raises(InvalidRequest) as e:
        streaming.sub_path(vol, name, must_exist=False)
    assert e.value.message.startswith(f"path {name!r}: ")
