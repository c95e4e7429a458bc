"""The `oci` runtime: each container is a runc bundle run in the foreground under a shim.

    OCIRuntime(state_dir, runc="runc")

prepare() writes `<state_dir>/<handle>/bundle/config.json` (built by the pure `build_config()`),
start() launches the shim, which runs `runc run --keep --bundle … --pid-file … <handle>` and records
the exit status (reading the kept container's memory cgroup to tell an OOM kill); destroy() runs
`runc delete --force`, which also removes the cgroups. runc's own state lives in `<state_dir>/.runc`, cgroups at `/airside/<state dir hash>.<handle>`.

Isolation: pid, ipc, uts and mount namespaces and, by default, a fresh network namespace with only
loopback (`ContainerSpec.network = "host"` shares the host's network instead). Unprivileged
containers get Docker's default capabilities, no_new_privileges, masked /proc paths, read-only /sys;
privileged ones get every capability in this process's bounding set (capabilities the host does not
grant are always dropped, or runc would fail with "unable to apply caps").
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

from airside.core import log as logging

from .base import NETWORKS, ContainerSpec, RuntimeError_
from .net import Attached, BridgeNetwork, NetworkConfig, NetworkError, netns
from .supervise import SupervisedRuntime

log = logging.get("airside.runtime.oci")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# capability numbers (linux/capability.h), to read /proc/self/status CapBnd
CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip
# Docker's default set for unprivileged containers
DEFAULT_CAPS = [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
]  # fmt: skip
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def bounding_caps(status_path: str = "/proc/self/status") -> list[str]:
    """Capability names in this process's bounding set."""
    with open(status_path) as f:
        for line in f:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return [name for i, name in enumerate(CAP_NAMES) if mask >> i & 1]
    return list(CAP_NAMES)


# ---- users ------------------------------------------------------------------------------------


def _read_db(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: Path, user: str | None, image: str = "") -> tuple[int, int, list[int], str]:
    """(uid, gid, additional gids, home) for `user` — a name from the image's /etc/passwd, or uid[:gid]
    (gid may be a group name). None means root."""
    if not user:
        user = "0"
    # /etc/passwd inside the image: refuse to follow a symlink out of the rootfs
    etc = rootfs / "etc"
    passwd = [] if etc.is_symlink() else _read_db(etc / "passwd") if not (etc / "passwd").is_symlink() else []
    groups = [] if etc.is_symlink() else _read_db(etc / "group") if not (etc / "group").is_symlink() else []
    where = f"image {image!r}" if image else f"the image at {rootfs}"
    name, _, group = user.partition(":")
    entry = None
    if name.isdigit():
        uid = int(name)
        entry = next((p for p in passwd if len(p) >= 4 and p[2] == name), None)
        gid = int(entry[3]) if entry else 0
    else:
        entry = next((p for p in passwd if len(p) >= 4 and p[0] == name), None)
        if entry is None:
            raise RuntimeError_(
                f"user {name!r} is not in /etc/passwd of {where}: set run.user to a user the image defines, or to uid[:gid]"
            )
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((g for g in groups if len(g) >= 3 and g[0] == group), None)
            if g is None:
                raise RuntimeError_(f"group {group!r} (run.user {user!r}) is not in /etc/group of {where}")
            gid = int(g[2])
    extra: list[int] = []
    if entry is not None and not group:
        for g in groups:
            if len(g) >= 4 and entry[0] in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid:
                extra.append(int(g[2]))
    home = entry[5] if entry is not None and len(entry) >= 6 and entry[5] else "/"
    return uid, gid, extra, home


# ---- the config --------------------------------------------------------------------------------


def build_config(
    spec: ContainerSpec,
    uid: int,
    gid: int,
    additional_gids: list[int],
    home: str,
    bound_caps: list[str],
    cgroups_path: str,
    memsw: bool = True,
    extra_mounts: list[dict] | None = None,
    netns: Path | None = None,
) -> dict:
    """The OCI runtime config (config.json) for `spec`; pure."""
    env = {"PATH": DEFAULT_PATH, "HOME": home}
    env.update(spec.env)
    caps = [c for c in (bound_caps if spec.privileged else DEFAULT_CAPS) if c in bound_caps]
    capnames = [f"CAP_{c}" for c in caps]
    effective = capnames if uid == 0 else []  # like Docker: a non-root user gets no effective caps
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"] + ([] if spec.privileged else ["ro"])},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime"] + ([] if spec.privileged else ["ro"])},
    ]  # fmt: skip
    mounts += extra_mounts or []
    for m in spec.mounts:
        mounts.append(
            {
                "destination": m.destination,
                "type": "bind",
                "source": str(m.source),
                "options": ["rbind", "rprivate"] + (["ro"] if m.read_only else ["rw"]),
            }
        )
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if netns is not None:
        namespaces.append({"type": "network", "path": str(netns)})
    elif spec.network != "host":
        namespaces.append({"type": "network"})
    resources: dict = {"devices": [{"allow": spec.privileged, "access": "rwm"}]}
    if spec.limits.memory_bytes:
        resources["memory"] = {"limit": int(spec.limits.memory_bytes)}
        if memsw:
            resources["memory"]["swap"] = int(spec.limits.memory_bytes)  # no swap beyond the limit
    if spec.limits.cpu_shares:
        resources["cpu"] = {"shares": int(spec.limits.cpu_shares)}
    linux: dict = {"namespaces": namespaces, "cgroupsPath": cgroups_path, "resources": resources}
    if not spec.privileged:
        linux["maskedPaths"] = MASKED_PATHS
        linux["readonlyPaths"] = READONLY_PATHS
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {
                "uid": uid,
                "gid": gid,
                **({"additionalGids": additional_gids} if additional_gids else {}),
            },
            "args": [spec.path, *spec.args],
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": spec.dir or "/",
            "capabilities": {"bounding": capnames, "effective": effective, "permitted": effective},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": not spec.privileged,
        },
        "root": {"path": str(spec.rootfs), "readonly": False},
        "hostname": spec.handle[:63],
        "mounts": mounts,
        "linux": linux,
    }


def _mkdirs_in(base: Path, rel: str, uid: int, gid: int) -> None:
    """mkdir -p `rel` under `base` without following symlinks (a symlink component: leave it to runc,
    which creates the working directory inside the container's root). New dirs belong to uid:gid."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        return
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                os.chown(part, uid, gid, dir_fd=fd, follow_symlinks=False)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                return  # a symlink or not a directory
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)


def _cgroup_root(controller: str) -> Path | None:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, pfields = pre.split(), post.split()
                if pfields[0] == "cgroup" and controller in pfields[2].split(","):
                    return Path(fields[4])
                if pfields[0] == "cgroup2" and controller == "":
                    return Path(fields[4])
    except OSError:
        pass
    return None


class OCIRuntime(SupervisedRuntime):
    name = "oci"
    isolates = True

    def __init__(self, state_dir: Path, runc: str = "runc", network: NetworkConfig | None = None) -> None:
        path = shutil.which(runc)
        if path is None:
            raise RuntimeError_(
                f"{runc!r} not found on PATH: install it (apt-get install runc) or use the process runtime"
            )
        super().__init__(state_dir)
        self.runc = path
        self.runc_root = self.state_dir / ".runc"
        self.runc_root.mkdir(exist_ok=True)
        key = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:10]
        self.cgroup_prefix = f"/airside/{key}."  # one parent cgroup for every airside state dir
        self.bound_caps = bounding_caps()
        v1_memory = _cgroup_root("memory")
        self.unified = v1_memory is None and Path("/sys/fs/cgroup/cgroup.controllers").exists()
        self.memory_root = v1_memory if v1_memory is not None else Path("/sys/fs/cgroup")
        self.memsw = self.unified or (self.memory_root / "memory.memsw.limit_in_bytes").exists()
        self.network: BridgeNetwork | None = None
        if network is not None:
            self.network = BridgeNetwork(network, prefix=key)
            try:
                self.network.setup()
            except NetworkError as e:
                raise RuntimeError_(f"container network: {e}") from None
            self._prune_netns()
            self.network.prune(set(self.list()))

    def _runc(self, *args: str) -> list[str]:
        return [self.runc, "--root", str(self.runc_root), *args]

    def prepare(self, spec: ContainerSpec) -> None:
        if spec.rootfs is None or not Path(spec.rootfs).is_dir():
            raise RuntimeError_(f"container {spec.handle!r}: rootfs {spec.rootfs} is not a directory")
        if not spec.path:
            raise RuntimeError_(f"container {spec.handle!r}: run.path is empty")
        if not (spec.dir or "/").startswith("/"):
            raise RuntimeError_(f"container {spec.handle!r}: dir {spec.dir!r} must be an absolute path")
        for m in spec.mounts:
            if not m.destination.startswith("/") or ".." in m.destination.split("/"):
                raise RuntimeError_(
                    f"mount destination {m.destination!r} must be an absolute path without '..'"
                )
            if not Path(m.source).exists():
                raise RuntimeError_(f"mount source {m.source} (for {m.destination}) does not exist")
        if spec.network not in NETWORKS:
            raise RuntimeError_(f"network {spec.network!r} is not supported: use one of {', '.join(NETWORKS)}")
        if spec.network == "bridge" and self.network is None:
            raise RuntimeError_("network 'bridge' needs a container network: this runtime was made without one")
        rootfs = Path(spec.rootfs)
        uid, gid, extra, home = resolve_user(rootfs, spec.user, spec.image)
        cdir = self._new_cdir(spec)
        try:
            self._prepare_dir(spec, rootfs, uid, gid)
            bundle = cdir / "bundle"
            bundle.mkdir(exist_ok=True)
            netns: Path | None = None
            if spec.network == "bridge":
                assert self.network is not None
                netns = cdir / "netns"
                attached = self._attach(spec.handle, netns)
                (bundle / "hosts").write_text(attached.hosts)
                (bundle / "resolv.conf").write_text(attached.resolv_conf)
            else:
                (bundle / "hosts").write_text(
                    f"127.0.0.1\tlocalhost {spec.handle[:63]}\n::1\tlocalhost ip6-localhost\n"
                )
            (bundle / "hostname").write_text(spec.handle[:63] + "\n")
            extra_mounts = [
                {
                    "destination": "/etc/hosts",
                    "type": "bind",
                    "source": str(bundle / "hosts"),
                    "options": ["rbind", "ro"],
                },
                {
                    "destination": "/etc/hostname",
                    "type": "bind",
                    "source": str(bundle / "hostname"),
                    "options": ["rbind", "ro"],
                },
            ]
            if spec.network == "host" and os.path.exists("/etc/resolv.conf"):
                shutil.copy(Path("/etc/resolv.conf").resolve(), bundle / "resolv.conf")
            if (bundle / "resolv.conf").exists():
                extra_mounts.append(
                    {
                        "destination": "/etc/resolv.conf",
                        "type": "bind",
                        "source": str(bundle / "resolv.conf"),
                        "options": ["rbind", "ro"],
                    }
                )
            cgroups_path = f"{self.cgroup_prefix}{spec.handle}"
            config = build_config(
                spec, uid, gid, extra, home, self.bound_caps, cgroups_path, self.memsw, extra_mounts, netns
            )
            (bundle / "config.json").write_text(json.dumps(config, indent=1))
            command = {
                "argv": self._runc(
                    "--log",
                    str(cdir / "runc.log"),
                    "--log-format",
                    "json",
                    "run",
                    "--keep",
                    "--bundle",
                    str(bundle),
                    "--pid-file",
                    str(cdir / "pid"),
                    spec.handle,
                ),  # fmt: skip
                "cwd": str(bundle),
                "pid_file": str(cdir / "pid"),
                "runc_log": str(cdir / "runc.log"),
                "signal_exit_codes": True,
                "oom_cgroup": str(self.memory_root / cgroups_path.lstrip("/")),
            }
            self._commit_prepare(cdir, spec, command)
        except BaseException:
            self._detach(spec.handle, cdir)
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        log.info("container prepared", handle=spec.handle, rootfs=str(rootfs), user=f"{uid}:{gid}")

    def _prepare_dir(self, spec: ContainerSpec, rootfs: Path, uid: int, gid: int) -> None:
        """Create the working directory (owned by the task's user) if it is missing."""
        d = spec.dir or "/"
        best = None
        for m in spec.mounts:
            dest = m.destination.rstrip("/") or "/"
            if (d == dest or d.startswith(dest + "/")) and (
                best is None or len(dest) > len(best.destination)
            ):
                best = m
        if best is None:
            _mkdirs_in(rootfs, d, uid, gid)
        elif not best.read_only and Path(best.source).is_dir():
            _mkdirs_in(Path(best.source), d[len(best.destination.rstrip("/")) :], uid, gid)

    def _deliver(self, handle: str, sig: int) -> None:
        cdir = self.cdir(handle)
        deadline = time.monotonic() + 10
        while not (cdir / "pid").exists():  # runc is still creating the container
            if self.status(handle) != "running" or time.monotonic() > deadline:
                return
            time.sleep(0.02)
        r = subprocess.run(self._runc("kill", handle, str(int(sig))), capture_output=True, text=True)
        if r.returncode != 0 and self.status(handle) == "running":
            msg = r.stderr.strip().splitlines()[-1:] or [""]
            if "not running" not in msg[0] and "does not exist" not in msg[0]:
                raise RuntimeError_(f"could not signal container {handle!r}: {msg[0]}")

    # ---- the container network ----------------------------------------------------------------------
    def _attach(self, handle: str, netns_path: Path) -> Attached:
        assert self.network is not None
        try:
            netns.create(netns_path)
        except netns.NetnsError as e:
            raise RuntimeError_(f"container {handle!r}: {e}") from None
        try:
            return self.network.attach(handle, netns_path, handle[:63])
        except NetworkError as e:
            raise RuntimeError_(f"container {handle!r}: no network: {e}") from None

    def _detach(self, handle: str, cdir: Path) -> None:
        # the namespace first: with no process left in it the kernel removes it and its veth; then DEL gives
        # the address back (deleting the veth from inside the namespace first costs ≈30 ms more per container)
        ns = cdir / "netns"
        had_netns = ns.exists()  # made before the ADD: also there when a crash cut the ADD short
        if had_netns:
            netns.remove(ns)
        if self.network is not None and (had_netns or self.network.is_attached(handle)):
            try:
                self.network.detach(handle, None)
            except NetworkError as e:
                log.warning("container network not released", handle=handle, error=str(e))

    def _prune_netns(self) -> None:
        """Unmount network namespaces whose container is gone (a crash between attach and removal)."""
        live = {self.cdir(h) / "netns" for h in self.list()}
        for ns in netns.mounted(self.state_dir):
            if ns not in live:
                netns.remove(ns)

    def close(self) -> None:
        if self.network is not None:
            self.network.close()

    def _teardown(self, handle: str) -> None:
        subprocess.run(self._runc("delete", "--force", handle), capture_output=True)
        self._detach(handle, self.cdir(handle))
        cg = self.memory_root / f"{self.cgroup_prefix}{handle}".lstrip("/")
        if cg.exists():
            try:
                cg.rmdir()
            except OSError:
                pass
