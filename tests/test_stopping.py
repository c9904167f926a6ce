"""The stop policy, with plain values: no process, no clock."""

from __future__ import annotations

import dataclasses
import math
import signal

import pytest

from smsbatch.realtime.backend import Phase
from smsbatch.realtime.stopping import STALL_SECONDS, Action, Situation, decide

RUNNING = Situation(
    phase=Phase.RUNNING, messages=100, final=40, live_senders=2, signals=(), now=50.0, time_limit=math.inf,
    lost_senders=0, producer_done=True, work_waiting=False, held_by_live=10, producer_lost=False,
    queue_broken=False, last_movement=49.9,
    tracks_claims=True, open_membership=False,
)  # fmt: skip


def with_(**changes):
    return dataclasses.replace(RUNNING, **changes)


def test_a_run_with_work_left_goes_on():
    assert decide(RUNNING).action == Action.CONTINUE


def test_every_message_counted_sends_the_stops():
    assert decide(with_(final=100)).action == Action.SEND_STOPS


def test_a_first_signal_stops_warmly_a_second_at_once():
    first = decide(with_(signals=(signal.SIGINT,)))
    assert (first.action, first.reason) == (Action.WARM, "SIGINT")
    assert "press Ctrl-C again" in first.note
    second = decide(with_(phase=Phase.WARM, signals=(signal.SIGINT, signal.SIGTERM)))
    assert (second.action, second.reason) == (Action.COLD, "SIGTERM twice")
    assert decide(with_(phase=Phase.COLD, signals=(signal.SIGINT, signal.SIGINT))).action == Action.CONTINUE


def test_a_signal_while_draining_still_stops_warmly():
    assert decide(with_(phase=Phase.DRAINING, final=100, signals=(signal.SIGTERM,))).action == Action.WARM


def test_the_time_limit_of_a_stopping_run_ends_it_cold():
    assert decide(with_(phase=Phase.WARM, time_limit=49.0)).action == Action.COLD
    assert decide(with_(phase=Phase.WARM, time_limit=51.0)).action == Action.CONTINUE


@pytest.mark.parametrize(("open_membership", "action"), [(False, Action.WARM), (True, Action.WAIT_FOR_SENDERS)])
def test_no_sender_left_ends_the_run_unless_one_may_join(open_membership, action):
    decision = decide(with_(live_senders=0, open_membership=open_membership))
    assert decision.action == action
    if action == Action.WARM:
        assert decision.reason == "every sender died"


def test_a_stall_after_a_death_queues_again_what_no_one_holds():
    stalled = with_(lost_senders=1, held_by_live=0, last_movement=50.0 - STALL_SECONDS - 0.1)
    assert decide(stalled).action == Action.REQUEUE_LOST  # what a dead sender took unsaid goes round again
    # Any one of these means it is not a stall:
    for change in ({"lost_senders": 0}, {"producer_done": False}, {"work_waiting": True}, {"held_by_live": 1},
                   {"last_movement": 49.5}, {"tracks_claims": False}):  # fmt: skip
        assert decide(dataclasses.replace(stalled, **change)).action == Action.CONTINUE, change


def test_the_producer_dying_sends_what_it_made_or_stops_warmly_if_it_broke_the_queue():
    drained = decide(with_(producer_done=False, producer_lost=True))
    assert (drained.action, drained.reason) == (Action.SEND_STOPS, "the producer died")
    warm = decide(with_(producer_done=False, producer_lost=True, queue_broken=True))
    assert (warm.action, warm.reason) == (Action.WARM, "the producer died")
    # Before every message counted, and before a sender's death: the producer's comes first.
    assert decide(with_(producer_lost=True, final=100)).reason == "the producer died"
