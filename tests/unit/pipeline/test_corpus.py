"""Every public pipeline in the corpus (../shared/corpus/concourse-pipelines/, or $AIRSIDE_CORPUS/
concourse-pipelines) validates once its vars are given; the ytt template in it is refused at the
lines ytt would have filled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airside.pipeline import PipelineConfigError, StaticVars, load_pipeline_config
from airside.task import TaskConfigError, parse_task_config

ROOT = Path(os.environ.get("AIRSIDE_CORPUS") or Path(__file__).resolve().parents[3].parent / "shared" / "corpus")
FOLDER = ROOT / "concourse-pipelines"
FILES = sorted(FOLDER.glob("*.yml")) if FOLDER.is_dir() else []
YTT = {"009-buildpacks-ci-brats-pipeline.yml"}


def _task_accepts_mock_images() -> bool:
    """airside.task before issue 16 refused image_resource types other than registry-image/docker-image."""
    try:
        parse_task_config({"platform": "linux", "image_resource": {"type": "mock", "source": {}},
                           "run": {"path": "x"}})
    except TaskConfigError:
        return False
    return True


def test_the_corpus_is_there():
    if not FOLDER.is_dir():
        pytest.skip(f"no corpus at {FOLDER} (set AIRSIDE_CORPUS to the folder holding concourse-pipelines/)")
    assert len(FILES) == 10, [f.name for f in FILES]


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_each_pipeline_validates_once_its_vars_are_given(path: Path):
    text = path.read_text()
    if path.name in YTT:
        with pytest.raises(PipelineConfigError) as info:
            load_pipeline_config(text, path.name)
        lines = text.splitlines()
        assert "looks like a ytt template" in info.value.warnings[0].message
        for p in info.value.problems:  # each at a value ytt would have filled in
            assert p.line is not None and any("#@" in ln for ln in lines[p.line - 1:p.line + 1]), str(p)
        return
    if path.name == "003-concourse-across.yml" and not _task_accepts_mock_images():
        with pytest.raises(PipelineConfigError) as info:
            load_pipeline_config(text, path.name)
        assert [(p.line, p.field) for p in info.value.problems] == [(25, "jobs[0].plan[2].config.image_resource.type")]
        return
    try:
        first = load_pipeline_config(text, path.name)
    except PipelineConfigError as e:
        pytest.fail(str(e))
    dummies = [f"{name.replace(chr(34), '')}=dummy" for name in first.unset]
    again = load_pipeline_config(text, path.name, StaticVars.from_flags(var=dummies))
    assert again.unset == {}, f"still missing: {sorted(again.unset)}"
    assert again.config.jobs, path.name
