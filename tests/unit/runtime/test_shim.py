"""The shim's record format and helpers, and get_runtime's dispatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airside.runtime import RuntimeError_, get_runtime
from airside.runtime.shim import HEADER, proc_starttime


def test_get_runtime_knows_oci_and_process_and_no_kubernetes(tmp_path: Path) -> None:
    assert get_runtime("process", tmp_path / "p").isolates is False
    with pytest.raises(RuntimeError_, match="unknown runtime 'nope'"):
        get_runtime("nope", tmp_path)
    # in a fresh interpreter (other tests here import the kubernetes backend on purpose)
    code = ("import sys, tempfile, airside.runtime as r; r.get_runtime('process', tempfile.mkdtemp()); "
            "print('airside.runtime.kubernetes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"  # (the process runtime logs its warning first)


def test_importing_the_package_imports_no_backend() -> None:
    code = "import sys, airside.runtime; print([m for m in sys.modules if m.startswith('airside.runtime.')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['airside.runtime.base']"


def test_shim_runs_a_command_and_frames_its_output(tmp_path: Path) -> None:
    cmd = {
        "argv": ["/bin/sh", "-c", "printf a; printf b >&2; exit 4"],
        "cwd": str(tmp_path),
        "env": {"PATH": "/bin:/usr/bin"},
    }
    (tmp_path / "command.json").write_text(json.dumps(cmd))
    subprocess.run([sys.executable, "-m", "airside.runtime.shim", str(tmp_path)], check=True, timeout=30)
    data = (tmp_path / "output.log").read_bytes()
    records = []
    while data:
        stream, n = HEADER.unpack_from(data)
        records.append((stream, data[HEADER.size : HEADER.size + n]))
        data = data[HEADER.size + n :]
    assert sorted(records) == [(1, b"a"), (2, b"b")]
    status = json.loads((tmp_path / "exit.json").read_text())
    assert (status["code"], status["reason"], status["error"]) == (4, "", None)
    assert (tmp_path / "shim.pid").exists() and (tmp_path / "pid").exists()


def test_proc_starttime_identifies_live_processes() -> None:
    assert proc_starttime(os.getpid()) is not None
    p = subprocess.Popen(["true"])
    p.wait()
    assert proc_starttime(p.pid) is None
