import signal

import pytest

from airside.worker.signals import Action, action_for


@pytest.mark.parametrize(
    ("sig", "ephemeral", "expected"),
    [
        (signal.SIGUSR1, False, Action.land),
        (signal.SIGUSR1, True, Action.land),
        (signal.SIGUSR2, False, Action.retire),
        (signal.SIGTERM, False, Action.land),
        (signal.SIGTERM, True, Action.retire),
        (signal.SIGINT, True, Action.retire),
    ],
)
def test_concourse_signal_mapping(sig: int, ephemeral: bool, expected: Action) -> None:
    assert action_for(sig, ephemeral=ephemeral, draining=False) == expected


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM])
def test_second_signal_stops_now(sig: int) -> None:
    assert action_for(sig, ephemeral=False, draining=True) == Action.stop_now


def test_unknown_signal_is_an_error() -> None:
    with pytest.raises(ValueError):
        action_for(signal.SIGHUP, ephemeral=False, draining=False)
