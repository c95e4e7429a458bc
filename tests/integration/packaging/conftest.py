"""Shared fixtures of the packaging tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from airside.packaging.render import render


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh render of the chart (the drift test proves chart/ equals it)."""
    out = tmp_path_factory.mktemp("chart") / "airside"
    render("helm", None, out)
    return out
