"""The on-disk state machine of volumes.

``<root>/{init,live,dead}/<handle>/`` each hold a volume directory: the driver's data (``volume/``
and whatever else the driver keeps) and ``meta.json``. A volume is made in ``init/``, renamed to
``live/`` when ready, and renamed to ``dead/`` before its data is removed, so a crash leaves it in a
recognisable state: at start, `sweep` moves what is left in ``init/`` to ``dead/`` and removes
everything in ``dead/``; live volumes are recovered by the driver.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from airside.baggageclaim.driver import VolumeDriver
from airside.baggageclaim.errors import VolumeConflict
from airside.baggageclaim.schemas import Volume
from airside.core import log

LOG = log.get("airside.baggageclaim.filesystem")
STATES = ("init", "live", "dead")
META = "meta.json"


class Filesystem:
    def __init__(self, root: Path, driver: VolumeDriver) -> None:
        self.root, self.driver = root, driver
        for s in STATES:
            (root / s).mkdir(parents=True, exist_ok=True)

    def dir(self, state: str, handle: str) -> Path:
        return self.root / state / handle

    def new(self, handle: str) -> Path:
        """An empty init directory for handle; refuses a handle that exists in init/ or live/."""
        if self.dir("live", handle).exists():
            raise VolumeConflict(f"volume {handle!r} already exists")
        d = self.dir("init", handle)
        try:
            d.mkdir()
        except FileExistsError:
            raise VolumeConflict(f"volume {handle!r} is being created") from None
        return d

    def activate(self, handle: str) -> Path:
        live = self.dir("live", handle)
        os.rename(self.dir("init", handle), live)
        return live

    def bury(self, state: str, handle: str) -> Path | None:
        """Renames the volume into dead/; returns where it went (None if it was not there)."""
        src = self.dir(state, handle)
        if not src.exists():
            return None
        dead = self.dir("dead", handle)
        if dead.exists():
            dead = self.dir("dead", f"{handle}.{uuid.uuid4().hex[:8]}")
        os.rename(src, dead)
        return dead

    def kill(self, state: str, handle: str) -> None:
        """Renames the volume into dead/ and removes it (driver data first)."""
        dead = self.bury(state, handle)
        if dead is not None:
            self.reap(dead)

    def reap(self, dead: Path) -> None:
        self.driver.destroy(dead)
        shutil.rmtree(dead, ignore_errors=True)

    def sweep(self) -> None:
        """Start-up: half-made volumes (init/) go to dead/; dead/ is emptied."""
        for d in sorted((self.root / "init").iterdir()):
            LOG.info("sweeping half-created volume", handle=d.name)
            self.kill("init", d.name)
        for d in sorted((self.root / "dead").iterdir()):
            LOG.info("removing dead volume", handle=d.name)
            self.reap(d)

    def live_dirs(self) -> list[Path]:
        return sorted(p for p in (self.root / "live").iterdir() if p.is_dir())

    @staticmethod
    def read_meta(dir: Path) -> Volume:
        return Volume.model_validate_json((dir / META).read_bytes())

    @staticmethod
    def write_meta(dir: Path, vol: Volume) -> None:
        tmp = dir / (META + ".tmp")
        tmp.write_text(json.dumps(vol.model_dump(mode="json")))
        os.replace(tmp, dir / META)
