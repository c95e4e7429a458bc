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
            out = subprocess.run(["file", "-L", cand], capture_output=True, text=True).stdout if shutil.which("file") else ""
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
