from pathlib import Path

import pytest

from airside.baggageclaim import tarpipe


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    """An empty volume data dir, with a sibling `outside` dir that hostile streams must never reach."""
    d = tmp_path / "vol"
    d.mkdir()
    (tmp_path / "outside").mkdir()
    return d


@pytest.fixture
def handovers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Why each stream went over to tarfile (empty: tar x did it all)."""
    seen: list[str] = []
    real = tarpipe.Handover.__init__

    def init(self: Exception, *args: object) -> None:
        seen.append(str(args[0]) if args else "")
        real(self, *args)

    monkeypatch.setattr(tarpipe.Handover, "__init__", init)
    return seen
