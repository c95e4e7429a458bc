"""A tiny busybox-static root filesystem for runtime and image tests (and benches).

`make_busybox_rootfs(path)` lays down /bin/busybox (Debian's busybox-static) with one symlink per
applet, a minimal /etc/passwd and /etc/group (root, `user` = 1000:1000, nobody), /tmp and /root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:test user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
user:x:1000:
extra:x:2000:user
nogroup:x:65534:
"""


def busybox_path() -> str | None:
    """The host's statically linked busybox, or None (apt-get install busybox-static)."""
    for cand in BUSYBOX_CANDIDATES:
        if os.path.exists(cand):
            out = (
                subprocess.run(["file", "-L", cand], capture_output=True, text=True).stdout
                if shutil.which("file")
                else ""
            )
            if not out or "statically linked" in out or "static-pie" in out:
                return cand
    return None


def make_busybox_rootfs(path: Path) -> Path:
    """Create (or complete) a busybox rootfs at `path`; returns `path`."""
    bb = busybox_path()
    if bb is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    path = Path(path)
    for d in ("bin", "etc", "tmp", "root", "home/user", "proc", "dev", "sys", "usr/bin", "sbin"):
        (path / d).mkdir(parents=True, exist_ok=True)
    os.chmod(path / "tmp", 0o1777)
    if hasattr(os, "chown") and os.geteuid() == 0:
        os.chown(path / "home/user", 1000, 1000)
    shutil.copy2(bb, path / "bin/busybox")
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = path / "bin" / applet
        if applet != "busybox" and not link.is_symlink() and not link.exists():
            link.symlink_to("busybox")
    (path / "etc/passwd").write_text(PASSWD)
    (path / "etc/group").write_text(GROUP)
    return path


# ---- image archives built by hand (docker save / OCI layout), for image tests -------------------

import gzip  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import tarfile  # noqa: E402


def layer_from_dir(src: Path) -> bytes:
    """An uncompressed layer tarball of a directory's contents (names relative, like `docker save`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in sorted(Path(src).iterdir()):
            tf.add(entry, arcname=entry.name)
    return buf.getvalue()


def layer_from_entries(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """A layer from (name, kind, data) rows: kind "file" (data = bytes), "dir", "symlink" (data = target),
    "whiteout" (an empty `.wh.` file: name is the full marker path). Names are used verbatim, hostile ones too."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(data)
                tf.addfile(ti)
            else:
                payload = data if isinstance(data, bytes) else str(data).encode()
                ti.size, ti.mode = len(payload), 0o755 if kind == "file" else 0o644
                tf.addfile(ti, io.BytesIO(payload))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_config(
    layers: list[bytes], env: list[str] | None = None, user: str = "", workdir: str = ""
) -> dict:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": env or ["PATH=/bin"], "User": user, "WorkingDir": workdir, "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha(layer)}" for layer in layers]},
    }


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
    tf.addfile(ti, io.BytesIO(data))


def make_docker_archive(layers: list[bytes], out: Path, **config_kw: object) -> Path:
    """A `docker save`-style tarball: <id>/layer.tar per layer, <config>.json, manifest.json."""
    config = json.dumps(image_config(layers, **config_kw)).encode()  # type: ignore[arg-type]
    with tarfile.open(out, "w") as tf:
        names = []
        for layer in layers:
            lid = _sha(layer)
            _add(tf, f"{lid}/layer.tar", layer)
            _add(tf, f"{lid}/VERSION", b"1.0")
            names.append(f"{lid}/layer.tar")
        _add(tf, f"{_sha(config)}.json", config)
        manifest = [{"Config": f"{_sha(config)}.json", "RepoTags": ["test/busybox:latest"], "Layers": names}]
        _add(tf, "manifest.json", json.dumps(manifest).encode())
    return out


def make_oci_layout(
    layers: list[bytes], out: Path, gzip_layers: bool = True, as_tar: bool = True, **config_kw: object
) -> Path:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/…) as a tarball (or a directory)."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        blobs[_sha(data)] = data
        return f"sha256:{_sha(data)}"

    config = json.dumps(image_config(layers, **config_kw)).encode()  # type: ignore[arg-type]
    layer_descs = []
    for layer in layers:
        data = gzip.compress(layer, mtime=0) if gzip_layers else layer
        mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        layer_descs.append({"mediaType": mt, "digest": blob(data), "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": layer_descs,
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": blob(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
    }
    files.update({f"blobs/sha256/{h}": data for h, data in blobs.items()})
    if as_tar:
        with tarfile.open(out, "w") as tf:
            for name, data in files.items():
                _add(tf, name, data)
    else:
        for name, data in files.items():
            (Path(out) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(out) / name).write_bytes(data)
    return out
