"""What the runner's helpers (members.py, reports.py) read of the run, and
what they hand back for the runner to do: they change their own state, never
the runner's."""

from __future__ import annotations

from dataclasses import dataclass, field

from smsbatch.core.model import MessageBatch
from smsbatch.realtime.backend import Phase
from smsbatch.realtime.retries import Retry


@dataclass(frozen=True)
class RunState:
    """The run at one moment, as the helpers see it."""

    now: float  # real time
    phase: Phase
    started: bool = True  # simulated time has begun
    transport_lost: bool = False


@dataclass
class Effects:
    """What the runner should do: lines to show, work to queue again, retries to schedule."""

    notes: list[str] = field(default_factory=list)
    requeue: list[MessageBatch] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)

    def add(self, other: Effects) -> Effects:
        self.notes += other.notes
        self.requeue += other.requeue
        self.retries += other.retries
        return self


def said(text: str) -> Effects:
    """Only a line to show."""
    return Effects(notes=[text])
