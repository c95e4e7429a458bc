"""The fast stream-in path (`tarpipe`: headers checked in Python, files written by GNU tar x): it gives
the same volume as the tarfile path, hands what it does not handle over to tarfile, and the pipelining
(tar lags behind the checks) opens no hole: the checks see what the stream already sent."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from airside.baggageclaim import streaming, tarpipe
from airside.baggageclaim.errors import BadStream, InvalidRequest

from .tarballs import chunks, entry, sparse_tar, tar_bytes

LIMIT = 1 << 30


def extract(vol: Path, raw: bytes, sub: str = "", privileged: bool = False, **kw):
    return streaming.extract(chunks(raw, kw.pop("size", 4096)), vol, sub, privileged=privileged,
                             limit=kw.pop("limit", LIMIT), **kw)


def snapshot(p: Path) -> dict[str, tuple]:
    """Everything about a tree that stream-in keeps (symlink times aside: tarfile does not set them)."""
    out: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for root, dirs, files in os.walk(p):
        for n in sorted(dirs + files):
            full = Path(root) / n
            st = os.lstat(full)
            rel = str(full.relative_to(p))
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                extra = (full.read_bytes(), inodes.setdefault(st.st_ino, rel))
            times = None if stat.S_ISLNK(st.st_mode) else int(st.st_mtime)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, times, extra)
    return out


def both_ways(tmp_path: Path, raw: bytes, privileged: bool = False, **kw) -> tuple[dict, dict]:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir(parents=True)
    slow.mkdir(parents=True)
    n1, _ = extract(fast, raw, privileged=privileged, use_tar=True, **kw)
    n2, _ = extract(slow, raw, privileged=privileged, use_tar=False, **kw)
    assert n1 == n2
    return snapshot(fast), snapshot(slow)


def big_tree(root: Path) -> None:
    long = "l" * 120
    (root / "a" / long).mkdir(parents=True)
    (root / "a" / long / ("f" * 110)).write_bytes(b"deep")
    (root / "a" / "x.bin").write_bytes(os.urandom(70_000))
    os.link(root / "a" / "x.bin", root / "a" / "x.hard")
    os.symlink(f"{long}/{'f' * 110}", root / "a" / "to-deep")
    os.symlink("../" + "t" * 101, root / "a" / "long-link")  # dangling, long target, stays inside
    (root / "a" / "ünï").write_text("utf-8 name")
    os.mkfifo(root / "a" / "fifo")
    os.chmod(root / "a" / "x.bin", 0o4751)
    os.utime(root / "a" / "x.bin", (1_600_000_000, 1_600_000_000))


@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar-ish"])
def test_gnu_tar_streams_give_the_same_volume_as_tarfile(tmp_path: Path, handovers: list, fmt: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big_tree(src)
    if fmt == "ustar-ish":  # tarfile's own PAX writer (what the tests and Python callers produce)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(src, arcname=".")
        raw = buf.getvalue()
    else:
        raw = subprocess.run(["tar", f"--format={fmt}", "--numeric-owner", "-C", str(src), "-cf", "-", "."],
                             check=True, capture_output=True).stdout
    fast, slow = both_ways(tmp_path, raw, size=65536)
    assert fast == slow
    assert "a/" + "l" * 120 + "/" + "f" * 110 in fast
    assert handovers == []


def test_big_ids_fractional_times_and_setuid(tmp_path: Path, handovers: list) -> None:
    f, data = entry("big-ids", data=b"x", uid=3_000_000, gid=4_000_000, mode=0o6755)
    f.mtime = 1_700_000_000.5
    raw = tar_bytes([(f, data), entry("d", "dir", mode=0o1777)])
    fast, slow = both_ways(tmp_path, raw)
    assert fast == slow and handovers == []
    assert fast["big-ids"][1] == 0o755  # setuid/setgid cleared in an unprivileged volume
    if os.geteuid() == 0:
        assert fast["big-ids"][2:4] == (3_000_000, 4_000_000)
    fast_p, slow_p = both_ways(tmp_path / "p", raw, privileged=True)
    assert fast_p == slow_p and fast_p["big-ids"][1] == 0o6755


def test_sparse_members_and_global_headers_go_to_tarfile(tmp_path: Path, handovers: list) -> None:
    raw = sparse_tar(tmp_path / "src", b"b")
    fast, slow = both_ways(tmp_path, raw)
    assert fast == slow and set(fast) == {"before", "sparse", "z-after"}
    assert handovers  # the sparse member (and what follows) went through tarfile

    handovers.clear()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "g"}) as tf:
        for ti, data in [entry("one", data=b"1"), entry("two", data=b"2")]:
            tf.addfile(ti, io.BytesIO(data))
    fast, slow = both_ways(tmp_path / "g", buf.getvalue())
    assert fast == slow and set(fast) == {"one", "two"} and handovers


def pax_entry(name: str, pax: dict[str, str], data: bytes = b"x") -> bytes:
    ti = tarfile.TarInfo("innocent")
    ti.size, ti.pax_headers = len(data), pax
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("raw_entries", "named", "why"),
    [
        ([entry("x" * 120 + "/../../escape", data=b"x")], "/../../escape", "traversal"),  # a GNU/PAX long name
        ([entry("s", "symlink", link="../" * 2 + "o" * 120)], "'s'", "points outside"),  # long link target
        ([entry("k", "symlink", link="."), entry("k/" + "y" * 120, data=b"x")], "k/", "is a symlink"),
    ],
)
def test_long_names_are_checked_like_short_ones(vol: Path, raw_entries: list, named: str, why: str,
                                               handovers: list) -> None:
    with pytest.raises(InvalidRequest) as e:
        extract(vol, tar_bytes([entry("good", data=b"fine"), *raw_entries]))
    assert named in e.value.message and why in e.value.message
    assert list(vol.iterdir()) == [] and list((vol.parent / "outside").iterdir()) == []
    assert handovers == []


def test_a_pax_path_is_the_name_that_is_checked(vol: Path) -> None:
    raw = pax_entry("innocent", {"path": "../escape"})
    with pytest.raises(InvalidRequest, match="'../escape'.*traversal"):
        extract(vol, raw)
    assert not (vol.parent / "escape").exists()


def test_a_gnu_header_with_extra_fields_is_not_read_as_a_prefixed_name(vol: Path, handovers: list) -> None:
    ti, data = entry("plain", data=b"x")
    hdr = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    hdr[345:352] = b"../../x"  # GNU tar: atime; tarfile: a ustar prefix
    hdr[148:156] = b"        "
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    raw = bytes(hdr) + data + bytes(511) + bytes(1024)
    with pytest.raises(InvalidRequest, match="traversal"):
        extract(vol, raw)  # handed to tarfile, which reads the prefix, and refuses
    assert handovers and list(vol.iterdir()) == []


def test_files_made_earlier_in_the_stream_are_seen_before_tar_writes_them(vol: Path, handovers: list) -> None:
    many = [entry(f"d/f{i}", data=b"x" * 1000) for i in range(300)]
    raw = tar_bytes([*many, entry("hl", "hardlink", link="d/f0"), entry("d/f0", data=b"new"),
                     entry("ln", "symlink", link="d/f1"), entry("ln", data=b"replaced")])
    n, _ = extract(vol, raw)
    assert n == 304 and handovers == []
    assert (vol / "hl").read_bytes() == b"x" * 1000 and (vol / "d/f0").read_bytes() == b"new"
    assert not (vol / "ln").is_symlink() and (vol / "ln").read_text() == "replaced"
    assert (vol / "d/f1").read_bytes() == b"x" * 1000


@pytest.mark.parametrize("made_by", ["volume", "stream"])
def test_a_directory_entry_over_a_symlink_replaces_it(vol: Path, handovers: list, made_by: str) -> None:
    outside = vol.parent / "outside"
    os.chmod(outside, 0o755)
    before = os.stat(outside)
    pre = []
    if made_by == "volume":
        os.symlink("../outside", vol / "d")
    else:
        pre = [entry("d", "symlink", link="sub"), entry("sub", "dir")]
    extract(vol, tar_bytes([*pre, entry("d", "dir", mode=0o700, uid=4242), entry("d/f", data=b"in")]))
    assert not (vol / "d").is_symlink() and (vol / "d/f").read_text() == "in"
    assert stat.S_IMODE(os.stat(vol / "d").st_mode) == 0o700
    after = os.stat(outside)
    assert (after.st_mode, after.st_uid, after.st_mtime) == (before.st_mode, before.st_uid, before.st_mtime)
    assert list(outside.iterdir()) == []
    assert handovers  # tar would keep a symlink to a directory: tarfile does this one


def test_a_refusal_deep_in_a_stream_stops_tar_and_restores_the_volume(vol: Path) -> None:
    good = [entry(f"d{i // 50}/f{i}", data=os.urandom(2000)) for i in range(2000)]
    with pytest.raises(InvalidRequest, match="'evil'"):
        extract(vol, tar_bytes([*good, entry("evil", "symlink", link="/etc")]), size=1 << 20)
    assert list(vol.iterdir()) == []


def test_garbage_in_the_middle_is_a_bad_stream(vol: Path) -> None:
    raw = tar_bytes([entry("a", data=b"a" * 600), entry("b", data=b"b")])
    broken = raw[:1536] + b"\x01" * 512 + raw[2048:]  # b's header
    (vol / "keep").write_text("old")
    with pytest.raises(BadStream) as e:
        extract(vol, broken)
    assert "'a'" in e.value.message and e.value.restored is False


def test_non_fatal_tar_complaints_are_ignored_like_tarfile_does() -> None:
    assert tarpipe.NONFATAL.search("tar: f: Cannot change ownership to uid 1234, gid 0: Invalid argument")
    assert not tarpipe.NONFATAL.search("tar: f: Cannot open: No space left on device")
