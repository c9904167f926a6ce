"""When and how a run stops: a pure function of what the runner knows.

No processes, no clock reads: the runner describes the run (a Situation) and
acts on the answer, so every rule is tested with plain values
(tests/test_stopping.py).

    running --every message counted--------------------> draining (one Stop per live sender)
       |    --a sender died, nothing moved since--------> running: what no one holds is queued again
       |                                                  (or draining, if nothing was lost)
       |    --no sender left (none may join)------------> warm
       |    --the producer died-------------------------> draining (warm, if it broke the queue)
       |--first SIGINT/SIGTERM (also while draining)----> warm   (finish what is in hand; a time limit)
       '--second signal, or the time limit passed-------> cold   (kill every child)
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import Enum

from smsbatch.realtime.backend import Phase

WARM_STOP_SECONDS = 2.5  # a warm stop waits this long for senders to report, then ends them
STALL_SECONDS = 1.0  # after a death: how long nothing may move before the queue is drained


class Action(Enum):
    CONTINUE = "continue"
    SEND_STOPS = "send stops"
    WARM = "warm stop"
    COLD = "cold stop"
    WAIT_FOR_SENDERS = "wait for senders"  # none left, but workers may join
    REQUEUE_LOST = "re-queue what was lost"  # a stall after a death: work lost in transit


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""  # what stopped the run, in words (empty: keep the one before)
    note: str = ""  # a line for the monitor


CONTINUE = Decision(Action.CONTINUE)


@dataclass(frozen=True)
class Situation:
    phase: Phase
    messages: int
    final: int  # messages sent, or failed for good
    live_senders: int
    signals: tuple[int, ...]  # SIGINT/SIGTERM received so far, in order
    now: float  # real seconds
    time_limit: float  # real time a stopping run ends cold (inf: none)
    lost_senders: int
    producer_done: bool
    work_waiting: bool  # retries scheduled, or work the sink had no room for
    held_by_live: int  # messages live senders hold (0 unless a sender was lost and the runner tracks claims)
    producer_lost: bool  # the producer died before it had made everything
    queue_broken: bool  # ... while writing to the work queue (it may hold half a batch)
    last_movement: float  # real time of the last report that was not a beat
    tracks_claims: bool
    open_membership: bool


def decide(run: Situation) -> Decision:
    return by_signal(run.signals, run.phase) or _by_time_limit(run) or _by_progress(run) or CONTINUE


def by_signal(signals: tuple[int, ...], phase: Phase) -> Decision | None:
    """The two-stage stop (the runner's, and `smsbatch worker`'s): the first
    SIGINT/SIGTERM asks for a warm stop, the second for a cold one."""
    if not signals:
        return None
    name = signal.Signals(signals[-1]).name
    if len(signals) >= 2 and phase != Phase.COLD:
        return Decision(Action.COLD, f"{name} twice")
    if phase in (Phase.RUNNING, Phase.DRAINING):
        return Decision(Action.WARM, name, f"{name}: stopping; press Ctrl-C again to stop at once")
    return None


def _by_time_limit(run: Situation) -> Decision | None:
    if run.phase != Phase.COLD and run.now > run.time_limit:
        return Decision(Action.COLD)
    return None


def _by_progress(run: Situation) -> Decision | None:
    if run.phase != Phase.RUNNING:
        return None
    if run.producer_lost:  # what it made is sent; if the queue may be broken, not even that
        return Decision(Action.WARM if run.queue_broken else Action.SEND_STOPS, "the producer died")
    if run.final == run.messages:
        return Decision(Action.SEND_STOPS)
    if not run.live_senders:
        if run.open_membership:
            return Decision(Action.WAIT_FOR_SENDERS)
        return Decision(Action.WARM, "every sender died")
    if stalled(run):
        return Decision(Action.REQUEUE_LOST)
    return None


def stalled(run: Situation) -> bool:
    """A sender died, the producer is done, nothing is waiting to be queued or
    held by anyone, and nothing moved for a while: the queue is empty (idle
    senders would have taken what was on it), so an open message is one a
    sender took and died with before it could say so.
    (A transport that redelivers a lost sender's work never stalls this way.)"""
    return (
        run.tracks_claims
        and run.lost_senders > 0
        and run.producer_done
        and not run.work_waiting
        and not run.held_by_live
        and run.now - run.last_movement > STALL_SECONDS
    )
