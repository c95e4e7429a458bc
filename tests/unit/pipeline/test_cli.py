"""`airside validate-pipeline`: exit 0 with "looks good" (listing vars not set), 1 listing every
problem; -v/-y/-l applied; --strict fails on warnings."""

from __future__ import annotations

from click.testing import CliRunner

from airside.cli import main

GOOD = """\
meta: {}
resources:
- {name: repo, type: git, source: {uri: ((uri))}}
jobs:
- {name: j, plan: [{get: repo, trigger: ((trigger))}]}
"""


def run(tmp_path, text, *args):
    (tmp_path / "p.yml").write_text(text)
    return CliRunner().invoke(main, ["validate-pipeline", "-c", str(tmp_path / "p.yml"), *args])


def test_looks_good_lists_the_vars_not_set(tmp_path):
    (tmp_path / "v.yml").write_text("trigger: true\n")
    r = run(tmp_path, GOOD, "-l", str(tmp_path / "v.yml"))
    assert r.exit_code == 0, r.output
    assert "vars not set (left for run time):\n  ((uri)) at line 3\n" in r.stdout
    assert r.stdout.endswith("looks good\n")
    r = run(tmp_path, GOOD, "-v", "uri=x", "-y", "trigger=false")
    assert r.exit_code == 0 and "not set" not in r.stdout, r.output


def test_invalid_exits_1_listing_every_problem(tmp_path):
    r = run(tmp_path, GOOD.replace("get: repo", "get: nope").replace("type: git", "type: gti"))
    assert r.exit_code == 1, r.output
    p = str(tmp_path / "p.yml")
    # without a web to ask which types its workers offer, an unknown type is a warning (web decides)
    assert f"warning: {p}:3: resources[0].type: unknown resource type 'gti'" in r.stderr
    assert f"error: {p}:5: jobs[0].plan[0].get: unknown resource 'nope'" in r.stderr
    assert "2 problems: configuration invalid" in r.stderr  # and 'repo' is not used
    assert "looks good" not in r.output


def test_strict_fails_on_warnings_and_bad_flags_are_usage_errors(tmp_path):
    r = run(tmp_path, GOOD, "--strict")
    assert r.exit_code == 1 and "warning: " in r.stderr and "unknown top-level key 'meta'" in r.stderr, r.output
    r = run(tmp_path, GOOD, "-v", "novalue")
    assert r.exit_code == 2 and "invalid variable pair" in r.stderr, r.output
