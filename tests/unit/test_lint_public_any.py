"""tools/lint/public_any.py (run by `make lint`) on a tiny package: new Any fails, allowed passes, stale fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "lint" / "public_any.py"

MODULE = '''\
from typing import Any
import typing as t


def typed(x: int) -> str:
    return str(x)


def loose(x: Any) -> None: ...


def _private(x: Any) -> Any: ...


class Box:
    def __init__(self, value: "dict[str, Any]") -> None: ...

    def get(self) -> t.Any: ...

    def _peek(self) -> Any: ...

    def precise(self) -> int:
        def local(y: Any) -> Any: ...
        return 0


class _Hidden:
    def open(self, x: Any) -> None: ...
'''


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "src" / "pkg" / "mod.py").write_text(MODULE)
    (tmp_path / "src" / "pkg" / "_internal.py").write_text("from typing import Any\ndef f(x: Any) -> Any: ...\n")
    return tmp_path


ALL = ["pkg.mod:Box.__init__", "pkg.mod:Box.get", "pkg.mod:loose"]


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root / "src"), "--allow",
                           str(root / "allow"), *args, "pkg"], capture_output=True, text=True, cwd=root)


def allow(root: Path, *keys: str) -> None:
    (root / "allow").write_text("# header\n\n" + "".join(f"{k}  # a reason\n" for k in keys))


def test_allowed_cases_pass(pkg: Path) -> None:
    allow(pkg, *ALL)
    r = run(pkg)
    assert r.returncode == 0, r.stderr


def test_a_new_any_fails_naming_file_and_line(pkg: Path) -> None:
    allow(pkg, "pkg.mod:Box.__init__", "pkg.mod:Box.get")
    r = run(pkg)
    assert r.returncode == 1
    assert "src/pkg/mod.py:9: pkg.mod:loose: Any in a public signature (x)" in r.stderr
    assert "Box" not in r.stderr and "_private" not in r.stderr and "local" not in r.stderr


def test_private_and_nested_functions_are_not_public(pkg: Path) -> None:
    allow(pkg, *ALL, "pkg.mod:_private", "pkg.mod:Box._peek", "pkg.mod:_Hidden.open", "pkg._internal:f")
    r = run(pkg)
    assert r.returncode == 1
    for key in ("pkg.mod:_private", "pkg.mod:Box._peek", "pkg.mod:_Hidden.open", "pkg._internal:f"):
        assert f"{key}: no longer a public signature with Any" in r.stderr


def test_a_stale_entry_fails(pkg: Path) -> None:
    allow(pkg, *ALL)
    mod = pkg / "src" / "pkg" / "mod.py"
    mod.write_text(mod.read_text().replace("def loose(x: Any)", "def loose(x: int)"))
    r = run(pkg)
    assert r.returncode == 1
    assert "allow:5: pkg.mod:loose: no longer a public signature with Any" in r.stderr


def test_entries_need_a_reason_and_appear_once(pkg: Path) -> None:
    (pkg / "allow").write_text("".join(f"{k}  # why\n" for k in ALL) + "pkg.mod:loose\n")
    r = run(pkg)
    assert r.returncode == 1
    assert "allow:4: pkg.mod:loose: an allow-list entry needs a `# reason`" in r.stderr
    assert "allow:4: pkg.mod:loose: listed twice" in r.stderr


def test_write_allow_keeps_reasons_and_drops_stale(pkg: Path) -> None:
    (pkg / "allow").write_text("pkg.mod:loose  # kept reason\npkg.mod:gone  # old\n")
    r = run(pkg, "--write-allow")
    assert r.returncode == 0, r.stderr
    assert "dropped pkg.mod:gone" in r.stdout
    lines = [x for x in (pkg / "allow").read_text().splitlines() if x and not x.startswith("#")]
    assert lines == ["pkg.mod:Box.__init__  # Any in value", "pkg.mod:Box.get  # Any in return",
                     "pkg.mod:loose  # kept reason"]
    assert run(pkg).returncode == 0
