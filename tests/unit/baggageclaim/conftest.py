from pathlib import Path

import pytest


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    """An empty volume data dir, with a sibling `outside` dir that hostile streams must never reach."""
    d = tmp_path / "vol"
    d.mkdir()
    (tmp_path / "outside").mkdir()
    return d
