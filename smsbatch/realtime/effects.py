"""What the runner's helpers (members.py, reports.py) read of the run, and
what they hand back for the runner to do: they change their own state, never
the runner's."""

from __future__ import annotations

from dataclasses import dataclass

from smsbatch.core.model import MessageBatch
from smsbatch.realtime.backend import Phase
from smsbatch.realtime.retries import Retry


@dataclass(frozen=True, slots=True)
class RunState:
    """The run at one moment, as the helpers see it."""

    now: float  # real time
    phase: Phase
    started: bool = True  # simulated time has begun
    transport_lost: bool = False
    # Real time the latest look at the reports began: what it found was sent by then.
    heard_at: float = 0.0
    # The runner's listening time at that look (members.Listening): silence is
    # measured on it, so a runner that was not listening hears no silence.
    listened: float = 0.0


@dataclass(frozen=True, slots=True)
class Effects:
    """What the runner should do: lines to show, work to queue again, retries to schedule."""

    notes: tuple[str, ...] = ()
    requeue: tuple[MessageBatch, ...] = ()
    retries: tuple[Retry, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.notes or self.requeue or self.retries)

    def __add__(self, other: Effects) -> Effects:
        """Both, this one's first (most reports ask for nothing: no new object then)."""
        if not other:
            return self
        if not self:
            return other
        return Effects(self.notes + other.notes, self.requeue + other.requeue, self.retries + other.retries)


NOTHING = Effects()


def said(text: str) -> Effects:
    """Only a line to show."""
    return Effects(notes=(text,))
