"""Image sources → rootfs + config: rootfs dirs/tarballs/URLs, docker-archive and OCI layouts built here by
hand (with a whiteout layer), hostile layers, and a registry that is not there."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import tarfile
import threading
import uuid
from pathlib import Path

import pytest

from airside.runtime import ContainerSpec, RuntimeError_, get_runtime
from airside.runtime.images import ImageSource, image_key, load_image_config, prepare_image, unpack_layer
from tests.rootfs import layer_from_dir, layer_from_entries, make_docker_archive, make_oci_layout

from .conftest import collect, needs_runc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def layers(busybox_rootfs: Path) -> list[bytes]:
    base = layer_from_dir(busybox_rootfs)
    extra = layer_from_entries(
        [
            ("data", "dir", b""),
            ("data/keep", "file", b"kept\n"),
            ("data/gone", "file", b"to be whited out\n"),
            ("opq", "dir", b""),
            ("opq/old", "file", b"hidden by the opaque dir\n"),
        ]
    )
    top = layer_from_entries(
        [
            ("data/.wh.gone", "whiteout", b""),
            ("data/added", "file", b"added on top\n"),
            ("opq", "dir", b""),
            ("opq/.wh..wh..opq", "whiteout", b""),
            ("opq/new", "file", b"new\n"),
        ]
    )
    return [base, extra, top]


CONFIG = {"env": ["PATH=/bin:/usr/bin", "GREETING=hi"], "user": "user", "workdir": "/data"}


def check_unpacked(target: Path) -> None:
    rootfs = target / "rootfs"
    assert (rootfs / "bin/busybox").is_file() and os.access(rootfs / "bin/busybox", os.X_OK)
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert (rootfs / "data/keep").read_text() == "kept\n"
    assert (rootfs / "data/added").read_text() == "added on top\n"
    assert not (rootfs / "data/gone").exists()
    assert sorted(os.listdir(rootfs / "opq")) == ["new"]
    assert not list(rootfs.rglob(".wh.*"))
    cfg = load_image_config(target)
    assert cfg.env == {"PATH": "/bin:/usr/bin", "GREETING": "hi"}
    assert (cfg.user, cfg.workdir) == ("user", "/data")


def test_docker_archive_with_a_whiteout_layer(tmp_path: Path, layers: list[bytes]) -> None:
    archive = make_docker_archive(layers, tmp_path / "image.tar", **CONFIG)
    src = ImageSource.detect(str(archive))
    assert src.kind == "tarball"
    prepare_image(src, tmp_path / "out")
    check_unpacked(tmp_path / "out")


@pytest.mark.parametrize("as_tar", [True, False], ids=["tarball", "directory"])
def test_oci_layout_with_a_whiteout_layer(tmp_path: Path, layers: list[bytes], as_tar: bool) -> None:
    out = tmp_path / ("oci.tar" if as_tar else "oci")
    if not as_tar:
        out.mkdir()
    make_oci_layout(layers, out, as_tar=as_tar, **CONFIG)
    prepare_image(ImageSource.detect(str(out)), tmp_path / "out")
    check_unpacked(tmp_path / "out")


def test_oci_layout_blob_corruption_is_detected(tmp_path: Path, layers: list[bytes]) -> None:
    out = tmp_path / "oci"
    out.mkdir()
    make_oci_layout(layers[:1], out, as_tar=False)
    blob = max((out / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(RuntimeError_, match="does not match its digest"):
        prepare_image(ImageSource.detect(str(out)), tmp_path / "out")


@pytest.mark.root
@needs_runc
def test_unpacked_image_runs_under_runc(tmp_path: Path, layers: list[bytes], destroy_all: list) -> None:
    archive = make_docker_archive(layers, tmp_path / "image.tar", **CONFIG)
    cfg = prepare_image(ImageSource.detect(str(archive)), tmp_path / "img")
    rt = get_runtime("oci", tmp_path / "state")
    destroy_all.append(rt)
    spec = ContainerSpec(
        handle="img", rootfs=tmp_path / "img/rootfs", path="sh", args=["-c", "id -u; cat added; ls /opq"],
        env=cfg.env, user=cfg.user, dir=cfg.workdir, image="test/busybox",
    )  # fmt: skip
    rt.prepare(spec)
    rt.start("img")
    out = collect(rt, "img")
    assert rt.wait("img").code == 0
    assert out["stdout"].decode().split() == ["1000", "added", "on", "top", "new"]


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "./../../escape"])
def test_layer_with_path_traversal_is_rejected(tmp_path: Path, name: str) -> None:
    bad = layer_from_entries([("ok", "file", b"fine"), (name, "file", b"pwned")])
    archive = make_docker_archive([bad], tmp_path / "bad.tar")
    target = tmp_path / "deep" / "out"
    with pytest.raises(RuntimeError_, match="path traversal"):
        prepare_image(ImageSource.detect(str(archive)), target)
    assert not list(tmp_path.rglob("escape"))


def test_hard_link_out_of_the_root_is_rejected(tmp_path: Path) -> None:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("passwd")
        ti.type, ti.linkname = tarfile.LNKTYPE, "../../../../etc/passwd"
        tf.addfile(ti)
    buf.seek(0)
    (tmp_path / "root").mkdir()
    with pytest.raises(RuntimeError_, match="path traversal"):
        unpack_layer(buf, tmp_path / "root")


def test_symlinks_in_layers_resolve_inside_the_rootfs(tmp_path: Path) -> None:
    outside = Path("/tmp") / f"airside-escape-{uuid.uuid4().hex}"
    layer = layer_from_entries(
        [
            ("link", "symlink", f"../../../../..{outside}"),
            ("link/pwned", "file", b"x"),
            ("abs", "symlink", "/etc"),
            ("abs/owned", "file", b"y"),
        ]
    )
    archive = make_docker_archive([layer], tmp_path / "sym.tar")
    prepare_image(ImageSource.detect(str(archive)), tmp_path / "out")
    rootfs = tmp_path / "out/rootfs"
    assert not outside.exists()
    assert (rootfs / outside.relative_to("/") / "pwned").read_bytes() == b"x"
    assert (rootfs / "etc/owned").read_bytes() == b"y" and not Path("/etc/owned").exists()


def test_rootfs_dir_and_concourse_image_artifact(tmp_path: Path, busybox_rootfs: Path) -> None:
    prepare_image(ImageSource.detect(str(busybox_rootfs)), tmp_path / "a")
    assert (tmp_path / "a/rootfs/bin/busybox").is_file()
    artifact = tmp_path / "artifact"
    shutil.copytree(busybox_rootfs, artifact / "rootfs", symlinks=True)
    (artifact / "metadata.json").write_text('{"env": ["FOO=bar"], "user": "user"}')
    cfg = prepare_image(ImageSource.detect(f"raw://{artifact}"), tmp_path / "b")
    assert (cfg.env, cfg.user) == ({"FOO": "bar"}, "user")
    assert (tmp_path / "b/rootfs/etc/passwd").is_file()


def test_plain_rootfs_tarball_from_a_path_and_a_url(tmp_path: Path, busybox_rootfs: Path) -> None:
    tarball = tmp_path / "rootfs.tgz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(busybox_rootfs, arcname=".")
    prepare_image(ImageSource.detect(str(tarball)), tmp_path / "from-path")
    assert (tmp_path / "from-path/rootfs/bin/busybox").is_file()

    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rootfs.tgz"
        src = ImageSource.detect(url)
        assert src.kind == "url"
        prepare_image(src, tmp_path / "from-url")
        assert (tmp_path / "from-url/rootfs/bin/busybox").is_file()
        with pytest.raises(RuntimeError_, match="HTTP 404"):
            prepare_image(ImageSource.detect(url + ".missing"), tmp_path / "from-404")
    finally:
        server.shutdown()


def test_image_key_is_stable_and_follows_content(tmp_path: Path, layers: list[bytes]) -> None:
    archive = make_docker_archive(layers[:1], tmp_path / "image.tar")
    k1 = image_key(ImageSource.detect(str(archive)))
    assert k1 == image_key(ImageSource.detect(str(archive)))
    make_docker_archive(layers, tmp_path / "image.tar")
    assert image_key(ImageSource.detect(str(archive))) != k1
    pinned = ImageSource.registry("example.org/app", digest="sha256:" + "a" * 64)
    assert image_key(pinned) == image_key(
        ImageSource.registry("example.org/app", tag="other", digest="sha256:" + "a" * 64)
    )
    assert image_key(ImageSource.registry("example.org/app", tag="1")) != image_key(
        ImageSource.registry("example.org/app", tag="2")
    )


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo (apt-get install skopeo)")
def test_registry_image_without_a_registry_names_the_image(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = ImageSource.registry(f"127.0.0.1:{port}/library/busybox", tag="1.36", insecure=True)
    with pytest.raises(RuntimeError_) as err:
        prepare_image(src, tmp_path / "out", timeout=30)
    msg = str(err.value)
    assert f"127.0.0.1:{port}/library/busybox:1.36" in msg and "no registry is reachable" in msg
    assert not (tmp_path / "out/image.json").exists()


def test_missing_image_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError_, match="no such directory or file"):
        ImageSource.detect(str(tmp_path / "nope.tar"))
