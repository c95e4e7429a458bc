"""The worker's boot epoch: the identity of its on-disk state.

A new epoch is made when the work dir has none (an empty disk: a new VM, a recreated pod) or when the
kernel booted since it was made (every container the worker ran is gone). A process restart on the
same disk and kernel keeps the epoch, so the worker can re-attach to containers that still run.
"""

from __future__ import annotations

import json
from pathlib import Path

from airside.core.schemas import EPOCH_RE, new_boot_epoch

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def kernel_boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def load_or_create(work_dir: Path) -> tuple[str, bool]:
    """Returns (epoch, created)."""
    path = work_dir / "boot-epoch.json"
    boot_id = kernel_boot_id()
    try:
        data = json.loads(path.read_text())
        if data.get("kernel_boot_id") == boot_id and EPOCH_RE.match(data.get("epoch", "")):
            return data["epoch"], False
    except (OSError, ValueError):
        pass
    epoch = new_boot_epoch()
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"epoch": epoch, "kernel_boot_id": boot_id}))
    tmp.replace(path)
    return epoch, True
