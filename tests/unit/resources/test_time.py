"""The bundled time resource, run for real in its rootfs. Its clock is set through
AIRSIDE_TIME_RESOURCE_NOW (a test-only override, documented in docs/resource-types.md)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from .harness import ResourceType

NOW = "AIRSIDE_TIME_RESOURCE_NOW"
TUESDAY = "2026-03-03T19:30:00Z"  # a Tuesday; 20:30 in Europe/Berlin (CET, +01:00)


def check(t: ResourceType, source: dict[str, Any], now: str, version: str | None = None) -> list[str]:
    req: dict[str, Any] = {"source": source}
    if version:
        req["version"] = {"time": version}
    return [v["time"] for v in t.run("check", req, env={NOW: now}).json()]


def test_first_check_is_now(time_type: ResourceType) -> None:
    assert check(time_type, {"interval": "1h"}, TUESDAY) == ["2026-03-03T19:30:00Z"]


def test_interval_gives_a_newer_version_only_once_it_passed(time_type: ResourceType) -> None:
    prev = "2026-03-03T18:40:00Z"
    assert check(time_type, {"interval": "1h"}, TUESDAY, prev) == [prev]  # 50 minutes later
    assert check(time_type, {"interval": "1h"}, "2026-03-03T19:40:00Z", prev) == [prev, "2026-03-03T19:40:00Z"]
    assert check(time_type, {"interval": "30m"}, TUESDAY, prev) == [prev, "2026-03-03T19:30:00Z"]


def test_days_filter(time_type: ResourceType) -> None:
    assert check(time_type, {"interval": "1m", "days": ["Monday", "Wednesday"]}, TUESDAY) == []
    assert check(time_type, {"interval": "1m", "days": ["Monday", "tue"]}, TUESDAY) == ["2026-03-03T19:30:00Z"]
    # days are weekdays in `location`: 23:30 UTC on Tuesday is already Wednesday in Tokyo
    late = "2026-03-03T23:30:00Z"
    assert check(time_type, {"interval": "1m", "days": ["Tuesday"], "location": "Asia/Tokyo"}, late) == []
    assert check(time_type, {"interval": "1m", "days": ["Wednesday"], "location": "Asia/Tokyo"}, late) == [
        "2026-03-04T08:30:00+09:00"]


def test_start_stop_window_in_location(time_type: ResourceType) -> None:
    window = {"start": "8:00 PM", "stop": "9:00 PM", "location": "Europe/Berlin"}
    assert check(time_type, window, TUESDAY) == ["2026-03-03T20:30:00+01:00"]  # inside, in Berlin's offset
    assert check(time_type, window, "2026-03-03T20:30:00Z") == []  # 21:30 in Berlin: past stop
    assert check(time_type, {**window, "location": "UTC"}, TUESDAY) == []  # 19:30 UTC: before start
    # without an interval: one version per window
    earlier_today = "2026-03-03T19:05:00+01:00"
    assert check(time_type, window, TUESDAY, earlier_today) == [earlier_today, "2026-03-03T20:30:00+01:00"]
    in_window = "2026-03-03T20:05:00+01:00"
    assert check(time_type, window, TUESDAY, in_window) == [in_window]


def test_initial_version_outside_the_window(time_type: ResourceType) -> None:
    source = {"start": "1:00 AM", "stop": "2:00 AM", "initial_version": True}
    assert check(time_type, source, TUESDAY) == ["2026-03-03T19:30:00Z"]
    assert check(time_type, {**source, "initial_version": False}, TUESDAY) == []


def test_bad_sources_are_refused(time_type: ResourceType) -> None:
    for source, message in [({"start": "8:00 PM"}, "must configure 'stop' if 'start' is set"),
                            ({"interval": "often"}, 'source.interval "often"'),
                            ({"days": ["Caturday"]}, "unknown weekday: Caturday"),
                            ({"location": "Mars/Olympus"}, 'source.location "Mars/Olympus"'),
                            ({"start": "25 o'clock", "stop": "1PM"}, "invalid time format")]:
        r = time_type.run("check", {"source": source}, env={NOW: TUESDAY})
        assert r.rc == 1 and message in r.stderr, (source, r.stderr)


def test_in_writes_input_timestamp_and_epoch(time_type: ResourceType, work: Path) -> None:
    req = {"source": {"interval": "1h"}, "version": {"time": "2026-03-03T20:30:00.5+01:00"}}
    r = time_type.run("in", req, work)
    assert r.json() == {"version": {"time": "2026-03-03T20:30:00.5+01:00"}, "metadata": []}
    assert json.loads((work / "input").read_text()) == req
    assert (work / "timestamp").read_text() == "2026-03-03 20:30:00.5 +0100 +0100"
    assert (work / "epoch").read_text() == str(int(datetime.fromisoformat("2026-03-03T19:30:00+00:00").timestamp()))


def test_out_is_now_in_location(time_type: ResourceType, work: Path) -> None:
    r = time_type.run("out", {"source": {"location": "America/New_York"}, "params": {}}, work, env={NOW: TUESDAY})
    assert r.json() == {"version": {"time": "2026-03-03T14:30:00-05:00"}, "metadata": []}


def test_real_clock_without_the_override(time_type: ResourceType, work: Path) -> None:
    before = datetime.now().astimezone()
    [v] = time_type.run("check", {"source": {}}).json()
    after = datetime.now().astimezone()
    assert before <= datetime.fromisoformat(v["time"]) <= after
