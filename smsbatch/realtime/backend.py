"""What the runner needs from a backend, as three small Protocols.

A backend moves work to senders and brings their reports back: the local
processes backend (local/backend.py: a queue and a pipe per child), Redis
Streams (broker/coordinator.py: senders on any machine) and an in-memory fake
(realtime/memory.py: instant, for tests). The runner (realtime/runner.py)
knows none of them; it holds one object that has all three:

    WorkSink      offer(item)            a batch or one Stop, without waiting; False: full, offer again later
                  announce(phase)        tell every sender how the run stands (draining, warm, cold)
    ReportSource  events(timeout)        what senders and the producer said, and who came and went
    Membership    begin(), start_clock(t), waits_on(i), end(i), end_all(),
                  children_running(), close()

Reports are the model's types (core/model.py: Claimed, Progress, Released,
Ready, SenderDone, ProducerDone, ChildFailed, Beat) whatever the transport;
the events below say who came and went. The contract every backend keeps is
tests/test_contract.py, run against each of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from smsbatch.core.model import MessageBatch, Stop
from smsbatch.core.settings import SenderSpec

PRODUCER = -1  # the producer's index in events (senders are 0, 1, ...)
NOBODY = -2  # the index of what the backend itself has to say (Note, Resumed)


class Phase(Enum):
    RUNNING = "running"
    DRAINING = "draining"  # every message counted: one Stop per live sender is on its way
    WARM = "warm"  # asked to stop: senders finish what is in hand and report
    COLD = "cold"  # stop at once: every child is killed


@dataclass(frozen=True, slots=True)
class Joined:
    """A sender the settings did not list joined the run (a worker elsewhere)."""

    sender: int
    name: str
    spec: SenderSpec
    where: str


@dataclass(frozen=True, slots=True)
class Exited:
    """A child process ended (after everything it said was delivered).

    `clean`: it exited with status 0; `reason`: how it ended, in words;
    `queue_broken`: the producer died mid-write, and the work queue may hold
    half a batch (a warm stop is the only safe way on)."""

    sender: int
    clean: bool
    reason: str
    crashed: bool = False  # it reported an exception (ChildFailed) first
    queue_broken: bool = False


@dataclass(frozen=True, slots=True)
class Note:
    """Something the backend has to say (one line for the monitor)."""

    text: str


@dataclass(frozen=True, slots=True)
class Resumed:
    """The transport answers again after an outage: nobody's silence meanwhile was their fault."""


Work = MessageBatch | Stop


class WorkSink(Protocol):
    def offer(self, item: Work) -> bool: ...

    def announce(self, phase: Phase) -> None: ...


class ReportSource(Protocol):
    def events(self, timeout: float) -> Iterable[tuple[int, object]]:
        """(sender index or PRODUCER, report or event) pairs, waiting up to `timeout` for the first."""
        ...


class Membership(Protocol):
    def begin(self) -> None:
        """Start the producer and the senders (they say Ready when set up)."""

    def start_clock(self, start: float) -> None:
        """Simulated time 0, at monotonic time `start`, for every sender."""

    def waits_on(self, sender: int) -> bool:
        """Does the run need word from this sender for a reason only the transport knows?"""
        ...

    def end(self, sender: int) -> bool:
        """A sender silent too long: end it for good. True if it is a process
        here, whose Exited follows; False if it is gone from the run now."""
        ...

    def end_all(self) -> None:
        """Kill every child at once (a cold stop)."""

    def children_running(self) -> bool:
        """Has any sender process of this machine not exited yet?"""
        ...

    def close(self) -> Iterable[tuple[int, object]]:
        """Leave no process behind and release everything; returns what was said last."""
        ...


class Backend(WorkSink, ReportSource, Membership, Protocol):
    """All three, plus the facts the runner's decisions depend on."""

    @property
    def tracks_claims(self) -> bool:
        """True: the runner tracks what each sender holds (Claimed) and re-queues
        what a lost one held. False: the transport redelivers it (Redis: XAUTOCLAIM)."""
        ...

    @property
    def open_membership(self) -> bool:
        """Senders may join after the start (workers elsewhere): none left is a wait, not the end."""
        ...

    @property
    def stop_grace(self) -> float:
        """Real seconds a sender may take to hear of a stop, beyond the runner's own grace."""
        ...

    @property
    def drain_limit(self) -> float | None:
        """Real seconds the end waits for senders to answer their Stop; None: no limit."""
        ...

    @property
    def run_id(self) -> str | None:
        """The transport's name for the run (Redis), for the summary."""
        ...

    @property
    def join_hint(self) -> str:
        """How a sender joins (open membership), shown while the run waits for one."""
        ...
