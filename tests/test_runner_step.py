"""The runner driven turn by turn with step(now), against the in-memory
backend: no process, no sleep, a fake clock. (The same runner runs the local
processes and Redis; tests/test_contract.py holds every backend to the same
promises.)"""

from __future__ import annotations

import io
import signal

import pytest

from smsbatch.assembly import make_source
from smsbatch.config import parse_settings
from smsbatch.core.clock import FakeClock
from smsbatch.core.model import Claimed
from smsbatch.present.monitor import Monitor, NullDisplay
from smsbatch.realtime.backend import Phase
from smsbatch.realtime.memory import MemoryBackend
from smsbatch.realtime.runner import ExitStatus, Runner

TURN = 0.01  # real seconds per turn, on the fake clock


def make_runner(*args: str) -> tuple[Runner, MemoryBackend, FakeClock]:
    settings = parse_settings(["--no-progress", "--seed", "3", *args])
    source, _ = make_source(settings)
    clock = FakeClock(100.0)
    backend = MemoryBackend(settings, source)
    monitor = Monitor(NullDisplay(io.StringIO()), settings.interval, clock)
    return Runner(settings, source, monitor, backend, clock, []), backend, clock


def drive(runner: Runner, clock: FakeClock, turns: int = 10_000, before_turn=None):
    runner.start()
    for turn in range(turns):
        if runner.over():
            return runner.finish()
        if before_turn is not None:
            before_turn(turn)
        clock.advance(TURN)
        runner.step(clock.now())
    raise AssertionError(f"not over after {turns} turns")


def accounted(result) -> bool:
    s = result.snapshot
    return s.sent + s.failed + s.unsent == s.messages and result.produced == s.messages


def test_every_message_is_counted_once_and_each_sender_answers_its_stop():
    runner, _, clock = make_runner("-n", "500", "--sender", "1:0.2", "--sender", "2:0")
    result = drive(runner, clock)
    s = result.snapshot
    assert result.exit_status == ExitStatus.OK
    assert result.stopped_by == "completed"
    assert (s.sent + s.failed, s.unsent, s.duplicates) == (500, 0, 0)
    assert [view.state for view in s.senders] == ["done", "done"]
    assert s.stats.attempts == 500 + s.retried  # every attempt is in the stats once
    assert runner.phase == Phase.DRAINING


def test_failures_go_round_exactly_max_retries_times():
    """Analytic: a sender that always fails makes 1 + max_retries attempts at
    each message, and every message fails for good."""
    runner, _, clock = make_runner("-n", "60", "--sender", "1:1.0", "--max-retries", "2", "--speed", "1000")
    s = drive(runner, clock).snapshot
    assert (s.sent, s.failed, s.retried) == (0, 60, 120)
    assert s.stats.attempts == 180


def test_a_dead_senders_claims_go_to_the_others():
    runner, backend, clock = make_runner("-n", "400", "--sender", "1:0", "--sender", "1:0")

    def kill_after_a_claim(turn: int) -> None:
        if turn == 0:
            backend.hang(0)  # it takes a batch and never reports on it
        if turn == 3:
            backend.end(0)

    result = drive(runner, clock, before_turn=kill_after_a_claim)
    s = result.snapshot
    assert s.senders[0].state == "died (SIGKILL)"
    assert s.requeued > 0
    assert s.lost_senders == 1
    assert (s.sent, s.unsent, s.duplicates) == (400, 0, 0)
    assert accounted(result)
    assert result.exit_status == ExitStatus.OK


def test_a_silent_sender_holding_work_is_lost_after_claim_after():
    runner, backend, clock = make_runner("-n", "400", "--sender", "1:0", "--sender", "1:0", "--claim-after", "5")
    lost_at: list[float] = []

    def hang_then_wait(turn: int) -> None:
        if turn == 0:
            backend.hang(1)  # nothing from it from now on, while the runner looks every TURN
        if not lost_at and runner.members.senders[1].silent_for is not None:
            lost_at.append(turn * TURN)

    s = drive(runner, clock, before_turn=hang_then_wait).snapshot
    assert s.senders[1].state.startswith("lost (silent for ")
    assert lost_at
    assert 5.0 <= lost_at[0] <= 5.0 + 3 * TURN  # --claim-after of listening, no sooner, hardly later
    assert (s.sent, s.unsent) == (400, 0)


def test_the_runners_own_pause_is_no_senders_silence():
    """The runner stopped for longer than --claim-after (SIGSTOP, a busy
    machine) and one sender's reports come through a few looks after the
    others' (the pipes' writers take turns): it was not silent, the runner was
    not listening (was: counted lost, and ended)."""
    runner, backend, clock = make_runner("-n", "4000", "--sender", "1:0", "--sender", "1:0", "--claim-after", "5")
    held: list = []
    events = backend.events

    def events_with_one_held_back(timeout: float) -> list:
        found = events(timeout)
        if 1 <= turns[0] < 6:  # it claimed a batch; then its reports wait behind the others'
            waits = [e for e in found if e[0] == 1 and (turns[0] > 1 or not isinstance(e[1], Claimed))]
            held.extend(waits)
            return [event for event in found if event not in waits]
        found, held[:] = held + found, []
        return found

    turns = [0]

    def pause(turn: int) -> None:
        turns[0] = turn
        if turn == 2:
            clock.advance(6.0)  # the runner does not look for 6 s

    backend.events = events_with_one_held_back
    result = drive(runner, clock, before_turn=pause)
    notes = runner.monitor.display.stream.getvalue()
    assert "silent" not in notes
    assert [view.state for view in result.snapshot.senders] == ["done", "done"]
    assert accounted(result)


def test_a_signal_stops_warmly_and_every_message_is_accounted_for():
    runner, _, clock = make_runner("-n", "5000", "--sender", "1:0")

    def interrupt(turn: int) -> None:
        if turn == 2:
            runner.signals.append(signal.SIGTERM)

    result = drive(runner, clock, before_turn=interrupt)
    assert result.exit_status == ExitStatus.TERMINATED
    assert result.stopped_by == "SIGTERM"
    assert 0 < result.snapshot.unsent < 5000
    assert result.snapshot.sent + result.snapshot.failed + result.snapshot.unsent == 5000


def test_every_sender_dead_ends_the_run_with_the_rest_unsent():
    runner, backend, clock = make_runner("-n", "5000", "--sender", "1:0")
    result = drive(runner, clock, before_turn=lambda turn: turn == 1 and backend.end(0))
    assert result.stopped_by == "every sender died"
    assert result.exit_status == ExitStatus.UNSENT
    assert result.snapshot.unsent > 0
    assert result.snapshot.sent + result.snapshot.unsent == 5000


@pytest.mark.parametrize("speed", ["1", "50"])
def test_the_figures_do_not_depend_on_the_speed(speed):
    """The fake's draws are the model's, on simulated time: the speed-up factor changes nothing."""
    runner, _, clock = make_runner("-n", "300", "--sender", "1:0.3", "--speed", speed)
    s = drive(runner, clock).snapshot
    reference, _, ref_clock = make_runner("-n", "300", "--sender", "1:0.3", "--speed", "7")
    r = drive(reference, ref_clock).snapshot
    assert (s.sent, s.failed, s.stats.time_sum) == (r.sent, r.failed, r.stats.time_sum)


def test_a_silent_sender_ended_is_lost_not_back_when_senders_may_join():
    """Its exit is not word from it: it is counted lost, never 'back'."""
    runner, backend, clock = make_runner("-n", "400", "--sender", "1:0", "--sender", "1:0", "--claim-after", "5")
    backend.open_membership = True  # as with Redis: a sender that speaks after it was lost is back

    s = drive(runner, clock, before_turn=lambda turn: turn == 0 and backend.hang(1)).snapshot
    notes = runner.monitor.display.stream.getvalue()
    assert s.senders[1].state.startswith("lost (silent for ")
    assert "is back" not in notes
    assert "sender 2 is silent for 5s: counted lost, ended" in notes


def test_a_batch_a_sender_took_and_died_with_before_claiming_it_is_sent_by_the_others():
    """Killed between taking a batch off the queue and saying so (Claimed): the
    runner never knew it held that batch. The stall that follows puts every
    open message no one holds back on the queue."""
    runner, backend, clock = make_runner("-n", "400", "--sender", "1:0", "--sender", "1:0")
    result = drive(runner, clock, before_turn=lambda turn: turn == 1 and backend.vanish(0))
    s = result.snapshot
    assert s.senders[0].state == "died (SIGKILL)"
    assert (s.sent, s.unsent, s.duplicates) == (400, 0, 0)
    assert s.requeued > 0
    assert result.exit_status == ExitStatus.OK
    assert result.stopped_by == "completed"
