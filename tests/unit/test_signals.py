import signal

import pytest

from airside.worker.signals import HANDLED, Action, action_for

# the whole table: every handled signal, ephemeral or not (README "Worker signals")
TABLE = [
    (signal.SIGUSR1, False, Action.land),
    (signal.SIGUSR1, True, Action.land),
    (signal.SIGUSR2, False, Action.retire),
    (signal.SIGUSR2, True, Action.retire),
    (signal.SIGTERM, False, Action.land),
    (signal.SIGTERM, True, Action.retire),
    (signal.SIGINT, False, Action.land),
    (signal.SIGINT, True, Action.retire),
]


@pytest.mark.parametrize(("sig", "ephemeral", "expected"), TABLE)
def test_concourse_signal_mapping(sig: int, ephemeral: bool, expected: Action) -> None:
    assert action_for(sig, ephemeral=ephemeral, draining=False) == expected


def test_the_table_covers_every_handled_signal() -> None:
    assert {(sig, eph) for sig, eph, _ in TABLE} == {(sig, eph) for sig in HANDLED for eph in (False, True)}


@pytest.mark.parametrize("ephemeral", [False, True])
@pytest.mark.parametrize("sig", HANDLED)
def test_second_signal_stops_now(sig: int, ephemeral: bool) -> None:
    assert action_for(sig, ephemeral=ephemeral, draining=True) == Action.stop_now


def test_unknown_signal_is_an_error() -> None:
    with pytest.raises(ValueError):
        action_for(signal.SIGHUP, ephemeral=False, draining=False)
