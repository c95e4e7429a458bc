"""Image root filesystems: turn a task's image source into `<target>/rootfs/` + `<target>/image.json`.

    src = ImageSource.detect("/images/busybox.tar")        # rootfs_uri: dir, tarball, URL, raw://, docker:///
    src = ImageSource.registry("alpine", tag="3.19")       # image_resource type registry-image/docker-image
    key = image_key(src)                                   # stable cache key ("image-<hex>")
    cfg = prepare_image(src, target)                       # -> ImageConfig(env, user, workdir, entrypoint, cmd)
    cfg = load_image_config(target)                        # later, from the cached volume

Sources:
- a local directory: a plain rootfs, a Concourse image artifact (`rootfs/` + `metadata.json`), or an OCI
  image layout (`oci-layout` + `index.json`);
- a tarball (local path or http(s) URL), recognised by content: `docker save` output (`manifest.json`),
  an OCI image layout, or a plain rootfs tarball;
- a registry image, fetched with `skopeo copy docker://… oci:…` (no registry reachable: RuntimeError_
  naming the image).

Layers are unpacked here with tarfile (no umoci): whiteouts (`.wh.<name>`) and opaque directories
(`.wh..wh..opq`) are applied, and every entry name and hard link target is split by the one path
sanitizer (`airside.core.paths.clean_parts`, rooted: a leading `/` is the rootfs), so a name with `..`
or a NUL byte is refused; symlinks met while unpacking are resolved as if the rootfs were `/`, never
on the host. No web/worker imports: the worker puts `target` in a volume and caches it by `image_key()`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from airside.core import log as logging
from airside.core.paths import UnsafePath, clean_parts

from .base import RuntimeError_

log = logging.get("airside.runtime.images")

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
UNREACHABLE_HINTS = ("connection refused", "no such host", "i/o timeout", "network is unreachable", "no route to host",
                     "dial tcp", "server misbehaving", "timeout", "connection reset")  # fmt: skip


def registry_host(reference: str) -> str:
    """The registry host of an image reference, by Docker's rule: the first path component when it has a
    `.` or `:` or is `localhost`, else Docker Hub (`docker.io`)."""
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def auth_file(registry: str, username: str, password: str) -> str:
    """A containers-auth.json / Docker config.json text holding one registry's credentials."""
    import base64

    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    key = "https://index.docker.io/v1/" if registry == "docker.io" else registry
    return json.dumps({"auths": {key: {"username": username, "password": password, "auth": token}}})


@dataclass(frozen=True)
class ImageSource:
    kind: str  # "dir" | "tarball" | "url" | "registry"
    location: str  # path, URL, or repository
    tag: str = "latest"  # registry only
    digest: str | None = None  # registry only: pins the image (the resource version)
    insecure: bool = False  # registry only: plain HTTP / unverified TLS
    username: str | None = field(default=None, repr=False, compare=False)  # registry only: credentials,
    password: str | None = field(default=None, repr=False, compare=False)  # given to skopeo in an auth file

    @classmethod
    def detect(cls, uri: str) -> ImageSource:
        """A rootfs_uri or image path: a directory, a tarball path, an http(s) URL, `raw:///path`,
        `file:///path`, or `docker:///repo[#tag]` / `docker://registry/repo[#tag]`."""
        if uri.startswith(("http://", "https://")):
            return cls("url", uri)
        if uri.startswith("docker://"):
            ref = uri[len("docker://") :].lstrip("/")
            repo, _, tag = ref.partition("#")
            return cls.registry(repo, tag or "latest")
        for prefix in ("raw://", "file://"):
            if uri.startswith(prefix):
                uri = uri[len(prefix) :]
        p = Path(uri)
        if p.is_dir():
            return cls("dir", str(p.resolve()))
        if p.is_file():
            return cls("tarball", str(p.resolve()))
        raise RuntimeError_(
            f"image {uri!r}: no such directory or file (expected a rootfs directory, a tarball or a URL)"
        )

    @classmethod
    def registry(
        cls, repository: str, tag: str = "latest", digest: str | None = None, insecure: bool = False,
        username: str | None = None, password: str | None = None,
    ) -> ImageSource:
        if not repository:
            raise RuntimeError_("registry image: source.repository is empty")
        if (username is None) != (password is None) or username == "":
            raise RuntimeError_(f"registry image {repository}: source needs both username and password to pull "
                                "with credentials")
        return cls("registry", repository, tag or "latest", digest, insecure, username, password)

    def display(self) -> str:
        if self.kind == "registry":
            return f"{self.location}@{self.digest}" if self.digest else f"{self.location}:{self.tag}"
        return self.location


@dataclass
class ImageConfig:
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    source: str = ""

    @classmethod
    def from_oci(cls, config: dict, source: str = "") -> ImageConfig:
        c = config.get("config") or config.get("Config") or {}
        return cls(
            env=_env_dict(c.get("Env") or []),
            user=c.get("User") or "",
            workdir=c.get("WorkingDir") or "",
            entrypoint=list(c.get("Entrypoint") or []),
            cmd=list(c.get("Cmd") or []),
            source=source,
        )


def _env_dict(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        if k:
            out[k] = v
    return out


# ---- cache key -------------------------------------------------------------------------------


def image_key(source: ImageSource) -> str:
    """A stable cache key for `source`: same source, same content → same key. Local tarballs are keyed by
    path, size and mtime; directories by a walk of (path, mode, size, mtime); URLs by URL; registry
    images by digest when pinned, else repository:tag (a tag can move: pin the digest to be exact)."""
    h = hashlib.sha256()
    h.update(f"v1\0{source.kind}\0{source.location}\0".encode())
    if source.kind == "registry":
        h.update((source.digest or f"tag:{source.tag}").encode())
    elif source.kind == "tarball":
        st = os.stat(source.location)
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    elif source.kind == "dir":
        for dirpath, dirnames, filenames in os.walk(source.location):
            dirnames.sort()
            for name in sorted(filenames) + dirnames:
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                h.update(
                    f"{os.path.relpath(p, source.location)}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
                )
    return "image-" + h.hexdigest()[:40]


# ---- layer unpacking ---------------------------------------------------------------------------


def _clean_parts(name: str, what: str, entry: str = "entry") -> list[str]:
    """The components of `name` inside the root (`clean_parts`, rooted); RuntimeError_ naming `what`
    (the image and layer) and the entry when the path is refused."""
    try:
        return clean_parts(name, rooted=True)
    except UnsafePath as e:
        raise RuntimeError_(f"{what}: refusing to unpack {entry} {name!r}: {e}") from None


def _resolve_in_root(root: str, parts: list[str]) -> str:
    """The host path of `parts` inside `root`, following symlinks as if `root` were `/`."""
    cur = root
    queue = list(parts)
    hops = 0
    while queue:
        p = queue.pop(0)
        if p in ("", "."):
            continue
        if p == "..":
            if cur != root:
                cur = os.path.dirname(cur)
            continue
        nxt = os.path.join(cur, p)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            cur = nxt
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise RuntimeError_(f"too many levels of symbolic links under {root} at {nxt}")
            target = os.readlink(nxt)
            if target.startswith("/"):
                cur = root
            queue = target.split("/") + queue
            continue
        cur = nxt
    return cur


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _open_tar(fileobj: IO[bytes]) -> tarfile.TarFile:
    head = fileobj.read(4)
    fileobj.seek(0)
    if head == b"\x28\xb5\x2f\xfd":  # zstd
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(fileobj)
        return tarfile.open(fileobj=reader, mode="r|")
    return tarfile.open(fileobj=fileobj, mode="r:*")


def unpack_layer(fileobj: IO[bytes], rootfs: Path, what: str = "layer", whiteouts: bool = True) -> None:
    """Apply one layer tarball (plain, gzip or zstd; seekable) onto `rootfs`."""
    root = os.path.realpath(rootfs)
    is_root = os.geteuid() == 0
    seen: set[str] = set()
    dir_times: list[tuple[str, float]] = []
    try:
        tf = _open_tar(fileobj)
    except tarfile.TarError as e:
        raise RuntimeError_(f"{what}: not a tar archive ({e})") from e
    with tf:
        for m in tf:
            parts = _clean_parts(m.name, what)
            if not parts:
                continue
            parent = _resolve_in_root(root, parts[:-1])
            base = parts[-1]
            if whiteouts and base.startswith(WHITEOUT):
                if not os.path.isdir(parent):
                    continue
                if base == OPAQUE:
                    for child in os.listdir(parent):
                        if os.path.join(parent, child) not in seen:
                            _remove(os.path.join(parent, child))
                else:
                    victim = os.path.join(parent, base[len(WHITEOUT) :])
                    if victim not in seen:
                        _remove(victim)
                continue
            os.makedirs(parent, exist_ok=True)
            p = parent
            while p != root and p not in seen:  # this layer's dirs survive its own opaque markers
                seen.add(p)
                p = os.path.dirname(p)
            dest = os.path.join(parent, base)
            seen.add(dest)
            if m.isdir():
                if not (os.path.isdir(dest) and not os.path.islink(dest)):
                    _remove(dest)
                    os.mkdir(dest, 0o700)
                dir_times.append((dest, m.mtime))
            elif m.isreg():
                _remove(dest)
                src = tf.extractfile(m)
                assert src is not None  # a regular member always has a body
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            elif m.issym():
                _remove(dest)
                os.symlink(m.linkname, dest)
            elif m.islnk():
                lparts = _clean_parts(m.linkname, what, f"hard link {m.name!r} to")
                target = os.path.join(_resolve_in_root(root, lparts[:-1]), lparts[-1]) if lparts else root
                if not os.path.lexists(target):
                    raise RuntimeError_(f"{what}: hard link {m.name!r} points at missing {m.linkname!r}")
                _remove(dest)
                os.link(target, dest, follow_symlinks=False)
                continue  # shares the target's inode and attributes
            elif m.isfifo():
                _remove(dest)
                os.mkfifo(dest)
            elif m.ischr() or m.isblk():
                if not is_root:
                    continue
                _remove(dest)
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(dest, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            else:
                continue
            if is_root:
                os.chown(dest, m.uid, m.gid, follow_symlinks=False)
            if not m.issym():
                os.chmod(dest, m.mode & 0o7777)
                for key, value in (m.pax_headers or {}).items():
                    if key.startswith("SCHILY.xattr."):
                        try:
                            os.setxattr(
                                dest,
                                key[len("SCHILY.xattr.") :],
                                value.encode("utf-8", "surrogateescape"),
                                follow_symlinks=False,
                            )
                        except OSError:
                            pass
            if not m.isdir():
                os.utime(dest, (m.mtime, m.mtime), follow_symlinks=False)
    for d, mtime in reversed(dir_times):
        try:
            os.utime(d, (mtime, mtime), follow_symlinks=False)
        except OSError:
            pass


# ---- image formats ------------------------------------------------------------------------------


class _Archive:
    """Files of an image, either in a directory or in a tarball (read by name)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_file():
            try:
                self.tar = tarfile.open(path, "r:*")
            except tarfile.TarError as e:
                raise RuntimeError_(f"image {path}: not a tar archive ({e})") from e
            for m in self.tar.getmembers():
                if not m.isreg():
                    continue
                try:
                    self.members["/".join(clean_parts(m.name, rooted=True))] = m
                except UnsafePath:
                    continue  # `open` refuses such a name, so the member can never be asked for

    def has(self, name: str) -> bool:
        return name in self.members if self.tar else (self.path / name).is_file()

    def open(self, name: str) -> IO[bytes]:
        parts = _clean_parts(name, f"image {self.path}")
        name = "/".join(parts)
        if self.tar is not None:
            if name not in self.members:
                raise RuntimeError_(f"image {self.path}: {name} is missing from the archive")
            f = self.tar.extractfile(self.members[name])
            assert f is not None
            return f
        p = self.path.joinpath(*parts)
        if p.is_symlink() or not p.is_file():
            raise RuntimeError_(f"image {self.path}: {name} is missing")
        return open(p, "rb")

    def json(self, name: str) -> dict[str, Any] | list[Any]:
        with self.open(name) as f:
            try:
                return json.load(f)
            except ValueError as e:
                raise RuntimeError_(f"image {self.path}: {name} is not valid JSON ({e})") from e

    def json_object(self, name: str) -> dict[str, Any]:
        """`name` parsed as JSON; RuntimeError_ unless it is an object (a manifest, an index, a config)."""
        value = self.json(name)
        if not isinstance(value, dict):
            raise RuntimeError_(f"image {self.path}: {name} is not a JSON object")
        return value

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _blob_name(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo not in ("sha256", "sha512") or not hexd.isalnum():
        raise RuntimeError_(f"unsupported or malformed digest {digest!r}")
    return f"blobs/{algo}/{hexd}"


def _verify(arc: _Archive, digest: str, what: str) -> None:
    algo, _, hexd = digest.partition(":")
    h = hashlib.new(algo)
    with arc.open(_blob_name(digest)) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != hexd:
        raise RuntimeError_(f"{what}: blob {digest} does not match its digest (corrupt image)")


def _go_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def _unpack_oci(arc: _Archive, rootfs: Path, display: str, ref: str | None = None) -> dict:
    index = arc.json("index.json")
    manifests = (index.get("manifests") or []) if isinstance(index, dict) else []
    if ref:
        named = [
            m
            for m in manifests
            if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref
        ]
        manifests = named or manifests
    if not manifests:
        raise RuntimeError_(f"image {display}: index.json lists no manifests")
    desc = manifests[0]
    for _ in range(3):
        if desc.get("mediaType") not in INDEX_TYPES:
            break
        sub = arc.json_object(_blob_name(desc["digest"])).get("manifests") or []
        want = [m for m in sub if (m.get("platform") or {}).get("os") == "linux"
                and (m.get("platform") or {}).get("architecture") == _go_arch()]  # fmt: skip
        if not want:
            raise RuntimeError_(f"image {display}: no manifest for linux/{_go_arch()}")
        desc = want[0]
    _verify(arc, desc["digest"], f"image {display}")
    manifest = arc.json_object(_blob_name(desc["digest"]))
    config_digest = manifest["config"]["digest"]
    _verify(arc, config_digest, f"image {display}")
    config = arc.json_object(_blob_name(config_digest))
    for i, layer in enumerate(manifest.get("layers") or []):
        _verify(arc, layer["digest"], f"image {display}")
        with arc.open(_blob_name(layer["digest"])) as f:
            unpack_layer(_seekable(f), rootfs, what=f"image {display}: layer {i + 1}")
    return config


def _unpack_docker_archive(arc: _Archive, rootfs: Path, display: str) -> dict:
    manifest = arc.json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise RuntimeError_(f"image {display}: manifest.json lists no images")
    entry = manifest[0]
    config = arc.json_object(entry["Config"])
    for i, layer in enumerate(entry.get("Layers") or []):
        with arc.open(layer) as f:
            unpack_layer(_seekable(f), rootfs, what=f"image {display}: layer {i + 1}")
    return config


def _seekable(f: IO[bytes]) -> IO[bytes]:
    try:
        f.seek(0)
        return f
    except (OSError, io.UnsupportedOperation):
        return io.BytesIO(f.read())


# ---- preparing ---------------------------------------------------------------------------------


def load_image_config(target: Path) -> ImageConfig:
    return ImageConfig(**json.loads((Path(target) / "image.json").read_text()))


def prepare_image(
    source: ImageSource, target: Path, skopeo: str = "skopeo", timeout: float = 300
) -> ImageConfig:
    """Unpack `source` into `target/rootfs` and write `target/image.json`; returns the image config.
    `target` must be empty or missing; it is left incomplete (no image.json) on error."""
    target = Path(target)
    rootfs = target / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)
    if any(rootfs.iterdir()):
        raise RuntimeError_(f"image target {rootfs} is not empty")
    display = source.display()
    log.info("preparing image", image=display, kind=source.kind, target=str(target))
    if source.kind == "dir":
        config = _from_dir(Path(source.location), rootfs, display)
    elif source.kind == "tarball":
        config = _from_tarball(Path(source.location), rootfs, display)
    elif source.kind == "url":
        with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as tmp:
            path = Path(tmp) / "image.tar"
            _download(source.location, path, timeout)
            config = _from_tarball(path, rootfs, display)
    elif source.kind == "registry":
        with tempfile.TemporaryDirectory(dir=target, prefix=".pull-") as tmp:
            _skopeo_copy(source, Path(tmp), skopeo, timeout)
            arc = _Archive(Path(tmp) / "layout")
            config = ImageConfig.from_oci(_unpack_oci(arc, rootfs, display, ref="image"))
    else:
        raise RuntimeError_(f"unknown image source kind {source.kind!r}")
    config.source = display
    (target / "image.json").write_text(json.dumps(asdict(config), indent=1))
    return config


def _from_dir(src: Path, rootfs: Path, display: str) -> ImageConfig:
    if (src / "oci-layout").is_file() and (src / "index.json").is_file():
        return ImageConfig.from_oci(_unpack_oci(_Archive(src), rootfs, display))
    config = ImageConfig()
    if (src / "metadata.json").is_file() and (src / "rootfs").is_dir():  # a Concourse image artifact
        meta = json.loads((src / "metadata.json").read_text())
        # registry-image's metadata.json: env and user, and (Concourse 8) entrypoint and cmd
        config = ImageConfig(env=_env_dict(meta.get("env") or []), user=meta.get("user") or "",
                             entrypoint=list(meta.get("entrypoint") or []), cmd=list(meta.get("cmd") or []))
        src = src / "rootfs"
    r = subprocess.run(
        ["cp", "-a", "--reflink=auto", f"{src}/.", str(rootfs)], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise RuntimeError_(f"image {display}: copying the rootfs failed: {r.stderr.strip()}")
    return config


def _from_tarball(path: Path, rootfs: Path, display: str) -> ImageConfig:
    arc = _Archive(path)
    try:
        if arc.has("manifest.json") and not arc.has("index.json"):
            return ImageConfig.from_oci(_unpack_docker_archive(arc, rootfs, display))
        if arc.has("oci-layout") and arc.has("index.json"):
            return ImageConfig.from_oci(_unpack_oci(arc, rootfs, display))
        if arc.has("manifest.json"):  # docker >= 25 saves both: manifest.json is the simpler path
            return ImageConfig.from_oci(_unpack_docker_archive(arc, rootfs, display))
    finally:
        arc.close()
    with open(path, "rb") as f:  # a plain rootfs tarball: one layer, `.wh.` files are just files
        unpack_layer(f, rootfs, what=f"image {display}", whiteouts=False)
    return ImageConfig()


def _download(url: str, dest: Path, timeout: float) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as r:
            if r.status_code != 200:
                raise RuntimeError_(f"image {url}: download failed: HTTP {r.status_code}")
            with open(dest, "wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
    except httpx.HTTPError as e:
        raise RuntimeError_(f"image {url}: download failed: {e}") from e


def _skopeo_copy(
    source: ImageSource, tmp: Path, skopeo: str, timeout: float, run: Callable = subprocess.run
) -> None:
    display = source.display()
    exe = shutil.which(skopeo)
    if exe is None:
        raise RuntimeError_(f"image {display}: pulling registry images needs skopeo (apt-get install skopeo)")
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    ref = f"{source.location}@{source.digest}" if source.digest else f"{source.location}:{source.tag}"
    argv = [
        exe,
        "--policy",
        str(policy),
        "--command-timeout",
        f"{int(timeout)}s",
        "copy",
        "--retry-times",
        "0",
    ]
    if source.insecure:
        argv.append("--src-tls-verify=false")
    if source.username is not None:  # in a 0600 file, never on the command line (ps shows that)
        authfile = tmp / "auth.json"
        fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(auth_file(registry_host(source.location), source.username, source.password or ""))
        argv += ["--src-authfile", str(authfile)]
    argv += [f"docker://{ref}", f"oci:{tmp / 'layout'}:image"]
    try:
        r = run(argv, capture_output=True, text=True, timeout=timeout + 10, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError_(
            f"image {display}: no registry is reachable (skopeo timed out after {int(timeout)}s)"
        ) from None
    if r.returncode != 0:
        detail = (r.stderr.strip().splitlines() or ["skopeo failed"])[-1]
        if any(h in detail.lower() for h in UNREACHABLE_HINTS):
            raise RuntimeError_(
                f"image {display}: no registry is reachable ({detail}). Use an image built on this machine "
                "(rootfs_uri, or a docker-archive/OCI tarball) or make the registry reachable."
            )
        raise RuntimeError_(f"image {display}: pulling from the registry failed: {detail}")
