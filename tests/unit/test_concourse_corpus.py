"""Every Concourse task file of the shared corpus (issue 16 item 1): the files Concourse accepts parse, the
ones it refuses are refused naming file:line:field. The expected verdicts, and why, are in
corpus/concourse_tasks.tsv (decided from Concourse's source, not from airside).

The corpus lives beside the project (`../shared/corpus` from the project root) or where AIRSIDE_CORPUS
points; where neither exists the tests skip saying so."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from airside.task import TaskConfigError, load_task_config

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("AIRSIDE_CORPUS") or ROOT / ".." / "shared" / "corpus")
TASKS = CORPUS / "concourse-tasks"
EXPECTED = Path(__file__).parent / "corpus" / "concourse_tasks.tsv"

pytestmark = pytest.mark.skipif(
    not (TASKS / "MANIFEST.tsv").is_file(),
    reason=f"no task corpus at {TASKS} (the shared corpus sits beside the project; set AIRSIDE_CORPUS)",
)


def _expectations() -> dict[str, tuple[str, str, str]]:
    rows = [r for r in EXPECTED.read_text().splitlines() if r and not r.startswith("#")]
    out = {}
    for row in rows:
        name, concourse, airside, note = row.split("\t")
        out[name] = (concourse, airside, note)
    return out


def _manifest() -> list[str]:
    with (TASKS / "MANIFEST.tsv").open() as f:
        return [r["filename"] for r in csv.DictReader(f, delimiter="\t")]


def _verdict(name: str) -> tuple[str, str]:
    try:
        load_task_config((TASKS / name).read_text(), name)
    except TaskConfigError as e:
        return "refuse", str(e)
    return "accept", ""


def test_every_file_in_the_manifest_is_there_and_the_table_names_only_them():
    files = _manifest()
    assert len(files) == len(set(files)) == len(list(TASKS.glob("*.yml")))
    assert set(_expectations()) <= set(files), set(_expectations()) - set(files)


@pytest.mark.parametrize("name", sorted(p.name for p in TASKS.glob("*.yml")) if TASKS.is_dir() else [])
def test_corpus_file(name):
    concourse, airside, note = _expectations().get(name, ("accept", "accept", ""))
    got, message = _verdict(name)
    assert got == airside, f"{name}: airside should {airside} it (Concourse: {concourse}; {note}), got {message}"
    if airside == "refuse":
        assert note in message, f"{name}: expected the message to say {note!r}, got {message}"


def test_agreement_with_concourse():
    """The totals the report quotes: how many files each accepts, and where they differ."""
    table = _expectations()
    files = _manifest()
    concourse = {n: table.get(n, ("accept",))[0] for n in files}
    airside = {n: _verdict(n)[0] for n in files}
    differ = sorted(n for n in files if concourse[n] != airside[n])
    allowed = sorted(n for n, (c, a, _) in table.items() if c != a)
    print(f"corpus: {len(files)} files; Concourse accepts {sum(v == 'accept' for v in concourse.values())}, "
          f"airside accepts {sum(v == 'accept' for v in airside.values())}; they differ on {differ}")
    assert differ == allowed
