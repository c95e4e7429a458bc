"""Fixtures shared by the integration tests that run real web and worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import WebProc
from tests.rootfs import make_busybox_rootfs


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem for `rootfs_uri` of oci tasks."""
    return make_busybox_rootfs(tmp_path_factory.mktemp("image") / "busybox")


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebProc]:
    """A real `airside web` on SQLite, for one test."""
    w = WebProc(tmp_path, heartbeat_ttl=3).start()
    yield w
    w.stop()
