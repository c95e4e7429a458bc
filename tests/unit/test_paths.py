"""airside.core.paths: the one path sanitizer, and its callers refusing the same hostile names.

`HOSTILE` is the shared table: every caller (task config paths, image layer entries and hard link
targets, stream-in tar members) must refuse each of these names. The stream-in side is tested with the
baggageclaim tests; task config and image layers are tested here through their public entries.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from airside.core.paths import UnsafePath, clean_parts
from airside.runtime import RuntimeError_
from airside.runtime.images import ImageSource, prepare_image, unpack_layer
from airside.task import TaskConfigError, parse_task_config
from tests.rootfs import layer_from_entries, make_docker_archive

# Names no caller may accept, relative or rooted. `a/../b` and `a/b/../..` are the ones a
# normalising sanitizer (posixpath.normpath) would quietly turn into `b` and `.`.
HOSTILE = [
    "..",
    "../escape",
    "./../escape",
    "a/../b",
    "a/b/../..",
    "a/..",
    "a//..//b",
    "/../etc/passwd",
    "a\x00b",
    "\x00",
]


# --------------------------------------------------------------------------- clean_parts


@pytest.mark.parametrize("rooted", [False, True])
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str, rooted: bool) -> None:
    with pytest.raises(UnsafePath):
        clean_parts(name, rooted=rooted)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("", []),
        (".", []),
        ("./", []),
        ("a", ["a"]),
        ("./a//b/", ["a", "b"]),
        ("a/./b/.", ["a", "b"]),
        # `..` only as a whole component: these are ordinary file names.
        ("...", ["..."]),
        ("..a/b..", ["..a", "b.."]),
        (".wh..wh..opq", [".wh..wh..opq"]),
    ],
)
def test_clean_names_split_into_components(name: str, parts: list[str]) -> None:
    assert clean_parts(name) == parts
    assert clean_parts(name, rooted=True) == parts


def test_a_leading_slash_is_refused_unless_rooted() -> None:
    with pytest.raises(UnsafePath, match="absolute"):
        clean_parts("/etc/passwd")
    assert clean_parts("/etc/passwd", rooted=True) == ["etc", "passwd"]
    assert clean_parts("/", rooted=True) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [("a/../b", "traversal"), ("a\x00b", "NUL"), ("/a", "absolute")],
)
def test_the_refusal_says_what_is_wrong(name: str, reason: str) -> None:
    with pytest.raises(UnsafePath, match=reason) as info:
        clean_parts(name)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- task config paths


def _task(**artifact_paths: str) -> dict:
    return {
        "platform": "linux",
        "run": {"path": "sh"},
        "inputs": [{"name": "in", "path": artifact_paths["inputs"]}],
        "outputs": [{"name": "out", "path": artifact_paths["outputs"]}],
        "caches": [{"path": artifact_paths["caches"]}],
    }


@pytest.mark.parametrize("name", HOSTILE)  # an absolute path is not hostile: Concourse mounts it there
def test_task_config_refuses_hostile_artifact_paths(name: str) -> None:
    with pytest.raises(TaskConfigError) as info:
        parse_task_config(_task(inputs=name, outputs=name, caches=name))
    assert [p.field for p in info.value.problems] == ["inputs[0].path", "outputs[0].path", "caches[0].path"]


def test_task_config_still_accepts_clean_paths() -> None:
    c = parse_task_config(_task(inputs="./src//", outputs="out/...", caches="src/..cache"))
    assert [c.inputs[0].path, c.outputs[0].path, c.caches[0].path] == ["src", "out/...", "src/..cache"]


# --------------------------------------------------------------------------- image layers


def _layer(name: str, *, hardlink_to: str | None = None) -> io.BytesIO:
    """A layer with a good file `ok`, then one member named `name` verbatim (a PAX path header,
    so a NUL byte survives), a regular file or a hard link to `hardlink_to`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ok = tarfile.TarInfo("ok")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        ti = tarfile.TarInfo("placeholder")
        ti.pax_headers = {"path": name}
        if hardlink_to is None:
            ti.size = 5
            tf.addfile(ti, io.BytesIO(b"pwned"))
        else:
            ti.type = tarfile.LNKTYPE
            ti.pax_headers["linkpath"] = hardlink_to
            tf.addfile(ti)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name", HOSTILE)
def test_image_layers_refuse_hostile_entries(tmp_path: Path, name: str) -> None:
    root = tmp_path / "deep" / "rootfs"
    root.mkdir(parents=True)
    with pytest.raises(RuntimeError_) as info:
        unpack_layer(_layer(name), root, what="image test: layer 2")
    assert str(info.value).startswith("image test: layer 2: ")
    assert repr(name) in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "ok", "rootfs"]


@pytest.mark.parametrize("target", HOSTILE)
def test_image_layers_refuse_hostile_hard_link_targets(tmp_path: Path, target: str) -> None:
    (tmp_path / "rootfs").mkdir()
    with pytest.raises(RuntimeError_) as info:
        unpack_layer(_layer("link", hardlink_to=target), tmp_path / "rootfs", what="image test: layer 1")
    assert str(info.value).startswith("image test: layer 1: ")
    assert "'link'" in str(info.value) and repr(target) in str(info.value)


def test_image_layer_names_are_rooted(tmp_path: Path) -> None:
    """In a layer a leading `/` is the rootfs (unlike task paths): `/etc/x` lands in rootfs/etc/x."""
    (tmp_path / "rootfs").mkdir()
    unpack_layer(_layer("/etc/x"), tmp_path / "rootfs")
    assert (tmp_path / "rootfs/etc/x").read_bytes() == b"pwned"


def test_prepare_image_names_the_layer_and_entry(tmp_path: Path) -> None:
    first = layer_from_entries([("bin", "dir", b"")])
    archive = make_docker_archive([first, _layer("a/../../b").getvalue()], tmp_path / "bad.tar")
    with pytest.raises(RuntimeError_, match=r"bad\.tar: layer 2: refusing to unpack entry 'a/\.\./\.\./b': "):
        prepare_image(ImageSource.detect(str(archive)), tmp_path / "img")
