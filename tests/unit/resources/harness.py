"""The bundled resource types' test harness: where tools/resources/build.sh builds them for the
tests, and a runner that executes their scripts the way a worker's container
would: chrooted into the type's rootfs, /proc, /dev and a fresh /tmp mounted, the in/out directory
at /tmp/build/work, the host's loopback network, and (unless privileged) without CAP_SYS_ADMIN."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "tools" / "resources" / "build.sh"
CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))
# built here (not in a fresh tmp dir) so that a session after an unchanged one reuses the build; the
# recipe hash in each type makes a changed source rebuild
OUT = Path(os.environ.get("AIRSIDE_TEST_RESOURCE_TYPES_DIR", CACHE / "test-resource-types"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORK = "/tmp/build/work"  # where the in/out directory is mounted in the container

# mounts what a container would have, then execs the rest of the arguments (the chroot)
_CONTAINER = r"""set -e
R="$1"; W="$2"; shift 2
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/tmp"
if [ -n "$W" ]; then mkdir -p "$R/tmp/build/work"; mount --bind "$W" "$R/tmp/build/work"; fi
exec "$@"
"""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.rc == 0, f"exit {self.rc}; stderr:\n{self.stderr}"
        return json.loads(self.stdout)


class ResourceType:
    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        meta = rootfs.parent / "resource_metadata.json"
        self.metadata = json.loads(meta.read_text()) if meta.exists() else {}

    def run(self, script: str, request: Any = None, work: Path | None = None, *, stdin: str | None = None,
            env: dict[str, str] | None = None, privileged: bool = False, timeout: float = 120) -> Result:
        """Runs /opt/resource/SCRIPT with the request as JSON on stdin (or `stdin` as is); in and out get
        `work` as their directory."""
        text = stdin if stdin is not None else json.dumps(request)
        caps = [] if privileged else ["setpriv", "--bounding-set", "-sys_admin"]
        args = [f"/opt/resource/{script}"] + ([WORK] if work is not None else [])
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _CONTAINER, "container",
               str(self.rootfs), str(work or ""), *caps, "chroot", str(self.rootfs), *args]
        p = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=timeout,
                           env={"PATH": PATH, **(env or {})})
        return Result(p.returncode, p.stdout, p.stderr)
