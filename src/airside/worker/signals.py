"""The one place that maps Unix signals to worker lifecycle actions, as Concourse operators know them.

    SIGUSR1 → land       (the worker will come back under the same name: BOSH VM recreate)
    SIGUSR2 → retire     (the worker goes away for good: container/pod deleted)
    SIGTERM → retire when the worker is ephemeral, land otherwise
    SIGINT  → same as SIGTERM (Ctrl-C in a terminal)
    a second signal while draining, or the drain timeout → stop now

Every packaging relies on this mapping: the image's STOPSIGNAL SIGUSR2, compose's stop_signal, the
chart's preStop hook and the BOSH drain script all send one of these signals.
"""

from __future__ import annotations

import signal
from enum import StrEnum


class Action(StrEnum):
    land = "land"
    retire = "retire"
    stop_now = "stop-now"


HANDLED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)


def action_for(signum: int, *, ephemeral: bool, draining: bool) -> Action:
    if draining:
        return Action.stop_now
    if signum == signal.SIGUSR1:
        return Action.land
    if signum == signal.SIGUSR2:
        return Action.retire
    if signum in (signal.SIGTERM, signal.SIGINT):
        return Action.retire if ephemeral else Action.land
    raise ValueError(f"signal {signum} has no worker action")


def signal_for(action: Action) -> signal.Signals:
    """The signal that asks a worker for an action (used by preStop/drain helpers)."""
    return {Action.land: signal.SIGUSR1, Action.retire: signal.SIGUSR2, Action.stop_now: signal.SIGKILL}[action]
