"""The `process` runtime: a plain subprocess under a shim. It does NOT isolate anything.

For development and machines without runc. Each container gets a root directory
`<state_dir>/<handle>/root/`; every mount becomes a symlink at its destination inside that root
(`root/tmp/build/x/input1 -> <host volume>`), and the task runs with its working directory at
`root/<spec.dir>`. Nothing else is rewritten: `spec.path` and `spec.args` are used as given (an
absolute path is a host path; a relative one is resolved from the working directory), the
environment is `spec.env` plus a default PATH, and the image rootfs, read-only flags, network and
limits are not applied (read-only mounts and limits are logged as ignored). `run.user` is honoured
when the worker runs as root (resolved from the host's passwd/group).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
from pathlib import Path

from airside.core import log as logging

from .base import ContainerSpec, RuntimeError_
from .supervise import SupervisedRuntime, pid_alive

log = logging.get("airside.runtime.process")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _host_user(user: str) -> tuple[int, int, list[int]]:
    name, _, group = user.partition(":")
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid, uname = pw.pw_uid, pw.pw_gid, pw.pw_name
    except KeyError:
        if not name.isdigit():
            raise RuntimeError_(
                f"user {name!r} does not exist on this host (process runtime uses the host's users)"
            ) from None
        uid, gid, uname = int(name), 0, None
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise RuntimeError_(f"group {group!r} does not exist on this host") from None
    extra = (
        [g.gr_gid for g in grp.getgrall() if uname and uname in g.gr_mem and g.gr_gid != gid]
        if not group
        else []
    )
    return uid, gid, extra


class ProcessRuntime(SupervisedRuntime):
    name = "process"
    isolates = False

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        log.warning(
            "the process runtime does NOT isolate tasks: they run as host processes with the worker's "
            "filesystem, network and privileges; use the oci runtime for anything but development",
            state_dir=str(self.state_dir),
        )

    def prepare(self, spec: ContainerSpec) -> None:
        if not spec.path:
            raise RuntimeError_(f"container {spec.handle!r}: run.path is empty")
        d = spec.dir or "/"
        if not d.startswith("/") or ".." in d.split("/"):
            raise RuntimeError_(
                f"container {spec.handle!r}: dir {spec.dir!r} must be an absolute path without '..'"
            )
        for m in spec.mounts:
            if (
                not m.destination.startswith("/")
                or ".." in m.destination.split("/")
                or m.destination.rstrip("/") == ""
            ):
                raise RuntimeError_(
                    f"mount destination {m.destination!r} must be an absolute path below / without '..'"
                )
            if not Path(m.source).exists():
                raise RuntimeError_(f"mount source {m.source} (for {m.destination}) does not exist")
        uid = gid = None
        groups: list[int] | None = None
        if spec.user:
            uid, gid, groups = _host_user(spec.user)
            if os.geteuid() != 0 and uid != os.geteuid():
                raise RuntimeError_(
                    f"run.user {spec.user!r} needs the worker to run as root (process runtime)"
                )
            if os.geteuid() != 0:
                uid = gid = groups = None
        ignored = [k for k, v in (("memory", spec.limits.memory_bytes), ("cpu", spec.limits.cpu_shares)) if v]
        if ignored or any(m.read_only for m in spec.mounts) or spec.privileged:
            log.warning(
                "process runtime ignores limits, read-only mounts and privileged",
                handle=spec.handle, limits=ignored, read_only=[m.destination for m in spec.mounts if m.read_only],
            )  # fmt: skip
        cdir = self._new_cdir(spec)
        try:
            root = cdir / "root"
            root.mkdir(exist_ok=True)
            for m in sorted(spec.mounts, key=lambda m: m.destination.count("/")):
                link = root / m.destination.strip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                if link.is_symlink() or link.exists():
                    raise RuntimeError_(
                        f"mount destination {m.destination!r} overlaps another mount (process runtime)"
                    )
                link.symlink_to(Path(m.source).resolve())
            cwd = root / d.strip("/")
            cwd.mkdir(parents=True, exist_ok=True)  # through a mount symlink: created in that volume
            if uid is not None and os.geteuid() == 0:
                self._chown_created(root, cwd, uid, gid)
            env = {"PATH": DEFAULT_PATH, **spec.env}
            command = {
                "argv": [spec.path, *spec.args],
                "cwd": str(cwd),
                "env": env,
                "uid": uid,
                "gid": gid,
                "groups": groups,
            }
            self._commit_prepare(cdir, spec, command)
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise

    @staticmethod
    def _chown_created(root: Path, cwd: Path, uid: int, gid: int | None) -> None:
        p = cwd
        while p != root and not p.is_symlink():
            os.chown(p, uid, gid if gid is not None else -1, follow_symlinks=False)
            p = p.parent
        os.chown(root, uid, -1)

    def _deliver(self, handle: str, sig: int) -> None:
        pid = pid_alive(self.cdir(handle) / "pid")
        if pid is None:
            return
        try:
            os.killpg(pid, sig)  # the shim starts the task in its own process group
        except ProcessLookupError:
            pass

    def _teardown(self, handle: str) -> None:
        if not (self.cdir(handle) / "exit.json").exists():
            self._deliver(handle, signal.SIGKILL)
