"""What code running builds inside the web process may use of it: the seam between `Web` and its dispatchers.

`airside.web.service.Web` satisfies `WebHost` (mypy checks it where Web hands itself to the Kubernetes
dispatcher). The dispatcher types against this Protocol, not against Web, so that the service module,
which constructs the dispatcher, and the dispatcher never import each other in a circle.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from airside.config import Settings
from airside.web.artifacts import ArtifactStore
from airside.web.db import BuildRow


class WebHost(Protocol):
    settings: Settings
    artifacts: ArtifactStore  # the builds' inputs and outputs as web stores them
    sessions: sessionmaker[Session]  # read-only use; writes go through tx()

    def clock(self) -> float:
        """Now, in Unix seconds (the clock every database timestamp uses)."""
        ...

    def tx(self) -> contextlib.AbstractContextManager[Session]:
        """A session inside a transaction, committed when the block ends without an exception."""
        ...

    def wake_scheduler(self) -> None:
        """Asks for a scheduling round now (a build ended or was requeued), not at the next interval."""
        ...

    def assignments_changed(self) -> None:
        """Wakes the workers' long-polls waiting in this process (callable from any thread)."""
        ...

    def observe_check_lag(self, seconds: float) -> None:
        """Records how late a resource check started after it was due."""
        ...

    def observe_finished(self, b: BuildRow) -> None:
        """Records a build that reached its final status in the metrics."""
        ...
