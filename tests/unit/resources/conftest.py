"""Fixtures of the bundled resource types' tests: the types built once per session by
tools/resources/build.sh (into harness.OUT), each run through harness.ResourceType."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import BUILD, OUT, ResourceType


@pytest.fixture(scope="session")
def resource_types() -> dict[str, ResourceType]:
    if os.geteuid() != 0:
        pytest.fail("the resource type tests run the types chrooted into their root filesystems: run them as root")
    for tool in ("go", "unshare", "setpriv", "chroot", "git"):
        if not shutil.which(tool) and not (tool == "go" and Path("/usr/local/go/bin/go").exists()):
            pytest.fail(f"the resource type tests need {tool}")
    p = subprocess.run(["bash", str(BUILD), str(OUT)], capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, f"tools/resources/build.sh failed:\n{p.stderr[-4000:]}"
    return {t: ResourceType(OUT / t / "rootfs") for t in ("mock", "time", "git")}


@pytest.fixture(scope="session")
def mock(resource_types: dict[str, ResourceType]) -> ResourceType:
    return resource_types["mock"]


@pytest.fixture(scope="session")
def time_type(resource_types: dict[str, ResourceType]) -> ResourceType:
    return resource_types["time"]


@pytest.fixture(scope="session")
def git_type(resource_types: dict[str, ResourceType]) -> ResourceType:
    return resource_types["git"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d
