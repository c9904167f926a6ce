"""The runner: one real-time run, from start to shutdown, over any backend.

Data flow (the local backend; Redis puts streams in place of the queue and
the pipes, see broker/coordinator.py):

    producer --MessageBatch--> work queue --MessageBatch--> sender 1 .. sender N
    (Process)                 (mp.Queue,                    (Processes)
        |                      bounded)                          |
        |                         ^                              | Claimed, Progress, Released,
        |                         | PendingWork: retries,        | SenderDone, ChildFailed, Beat
        |                         | re-queued batches, one Stop  | (a report pipe each)
        | ProducerDone            | per sender                   v
        +-----------------------> Runner (main process) <--------+
                                   | Accounts: the ledger (each message counted once),
                                   |   what each sender holds, stats, the timeline
                                   | RetrySchedule, stopping.decide()
                                   v
                                  Monitor (draws every --interval)

The backend (realtime/backend.py) is three small Protocols: a work sink, a
report source, and the membership (who runs, who is silent, who is ended).
The run ends by an explicit protocol, never by looking at an empty queue: when
every message is counted, the runner offers one Stop per live sender, and
each answers with SenderDone. The backend waits on every report and every
child's sentinel at once, so a child that dies is noticed at once: what it
held is queued again for the others.

`step(now)` is one turn of the loop; tests drive it by hand against the
in-memory backend (realtime/memory.py), as huey's tests drive `loop(now)`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from smsbatch.core.clock import Clock, SimClock
from smsbatch.core.model import Stop, TransportLost
from smsbatch.core.result import ExitStatus, RunResult, exit_status
from smsbatch.core.settings import Settings
from smsbatch.core.snapshot import RunMonitor, Snapshot
from smsbatch.core.source import MessageSource
from smsbatch.core.text import plural
from smsbatch.realtime.accounts import Accounts
from smsbatch.realtime.backend import Backend, Phase
from smsbatch.realtime.effects import Effects, RunState
from smsbatch.realtime.members import Listening, Members
from smsbatch.realtime.reports import ReportHandler
from smsbatch.realtime.retries import PendingWork, RetrySchedule
from smsbatch.realtime.status import stop_signals_caught
from smsbatch.realtime.stopping import (
    CONTINUE,
    WARM_STOP_SECONDS,
    Action,
    Decision,
    Situation,
    by_signal,
    decide,
)

TICK_SECONDS = 0.05  # longest wait between looks at signals and time limits

__all__ = ["ExitStatus", "RunResult", "Runner", "stop_signals_caught"]


@dataclass
class Runner:
    settings: Settings
    source: MessageSource
    monitor: RunMonitor
    backend: Backend
    clock: Clock  # real time; tests pass a FakeClock
    signals: list[int]  # SIGINT/SIGTERM received, in order (appended by the signal handler)

    def __post_init__(self) -> None:
        self.accounts = Accounts(self.settings, self.source, self.backend.tracks_claims)
        self.members = Members(self.settings, self.accounts, self.backend, self.clock.now())
        self.retries = RetrySchedule()
        self.pending = PendingWork()
        self.phase = Phase.RUNNING
        self.stopped_by = "completed"
        self.time_limit = float("inf")  # real time a stopping run ends cold
        self.transport_lost = False
        self.internal_error = False
        self.started = self.now = self.clock.now()
        self.heard_at = self.now  # real time the latest look at the reports began
        self.listening = Listening(self.now)  # silence is measured on it (see there)
        self.sim: SimClock | None = None  # set at simulated time 0
        self.startup = 0.0
        self.elapsed: float | None = None  # set when the run is over
        self.waiting_noted = False
        self.next_sample = 0.0  # real time
        self.reports = ReportHandler(self.members, self.accounts, self.backend.tracks_claims)

    # ---- start and end ----

    def run(self) -> RunResult:
        try:
            self.start()
            while not self.over():
                self.step()
                self.monitor.tick(self.snapshot)
        except Exception:  # a bug of ours: still stop everything and account for every message
            self.stopped_by, self.internal_error = "internal error", True
            self.note(f"internal error, stopping:\n{traceback.format_exc().rstrip()}")
        except BaseException:
            self.finish()  # leave no process behind, even then
            raise
        return self.finish()

    def start(self) -> None:
        """Start every child, and simulated time once they are ready."""
        self.started = self.now = self.clock.now()
        self.backend.begin()
        # Silence counts from the start of a sender, not of the run: forking a
        # thousand senders on a busy machine took longer than --claim-after.
        self.heard_at = self.clock.now()
        self.listening = Listening(self.heard_at)
        for member in self.members.senders:
            member.last_heard = self.listening.at
        self._wait_until_ready()

    def finish(self) -> RunResult:
        """Whatever happened: collect what was said last, leave no process behind, and say how it went."""
        try:
            if self.phase == Phase.RUNNING:  # it ended by an error of ours: tell the senders too
                self.backend.announce(Phase.WARM)
        except TransportLost:
            pass  # they will find out for themselves
        finally:
            for index, event in self.backend.close():
                self.apply(self.reports.handle(index, event, self.state()))
        self.elapsed = self.clock.now() - self.started
        status = exit_status(self.signals, self.accounts.ledger.unsent, self.internal_error)
        return RunResult(
            self.snapshot(), status, self.stopped_by, self.members.produced, self.startup,
            self.backend.run_id, self.accounts.trace,
        )  # fmt: skip

    def _wait_until_ready(self) -> None:
        """Simulated time 0 is a barrier: every sender ready and the first batches
        queued. Start-up is real time only; a child that dies meanwhile counts."""
        while self.phase == Phase.RUNNING and not self.members.all_ready():
            try:
                self._take_events(TICK_SECONDS)
            except TransportLost as error:
                self._transport_lost(str(error))
            self.now = self.clock.now()
            self._end_silent()  # one that hangs before it is ready must not hold up the start
            self._act(by_signal(tuple(self.signals), self.phase) or CONTINUE)  # the rest waits for time 0
        self.startup = self.now - self.started
        self.sim = SimClock(self.clock, self.settings.speed, self.now)
        self.backend.start_clock(self.now)

    def over(self) -> bool:
        if self.phase == Phase.RUNNING or self.backend.children_running():
            return False
        return not self.members.live or self.phase == Phase.COLD or self.transport_lost

    # ---- the loop ----

    def step(self, now: float | None = None) -> None:
        """One turn: take what came (waiting for it unless `now` is given), queue
        what is due, decide."""
        try:
            self._take_events(0.0 if now is not None else self._wait_seconds(), now)
            self.now = self.clock.now() if now is None else now
            self._end_silent()  # right after the news: a Resumed among it forgives an outage
            self._queue_due_retries()
            self.pending.flush(self.backend.offer)
            self._sample()
            self._act(decide(situation_of(self)))
        except TransportLost as error:
            self._transport_lost(str(error))

    def _end_silent(self) -> None:
        self.apply(self.members.end_silent(self.state()))

    def _sample(self) -> None:
        """The timeline's backlog and in-flight, at most every TICK_SECONDS of real time."""
        if self.sim is not None and self.now >= self.next_sample:
            self.accounts.sample(self.sim.at(self.now))
            self.next_sample = self.now + TICK_SECONDS

    def _wait_seconds(self) -> float:
        return max(0.0, min(TICK_SECONDS, self.monitor.due_in(), self._retry_due_in()))

    def _take_events(self, timeout: float, now: float | None = None) -> None:
        self.heard_at = self.clock.now() if now is None else now
        self.listening.look(self.heard_at)
        state = self.state()  # no report changes it: the phase and the rest change between turns
        for index, event in self.backend.events(timeout):
            self.apply(self.reports.handle(index, event, state))

    def _first_attempts_queued(self) -> bool:
        return self.members.producer_done or self.members.producer_exited

    def next_due_in(self) -> float:
        """Real seconds until the runner has something to do that no report brings: a retry due back."""
        return self._retry_due_in()

    def _retry_due_in(self) -> float:
        if not self.retries or not self._first_attempts_queued() or self.sim is None:
            return float("inf")
        return self.sim.real_delay(self.retries.next_at())

    def _queue_due_retries(self) -> None:
        """Retries due back go behind every first attempt (the model's FIFO: all
        first attempts are queued at time 0), so not before the producer is done."""
        if self.sim is None or not self._first_attempts_queued():
            return
        due = self.retries.take_due(self.sim.at(self.now), self.source.batch_size)
        if due and self.phase == Phase.RUNNING:
            self.pending.add(self.accounts.retry_batch(due))

    # ---- what the helpers see, and what they ask ----

    def state(self) -> RunState:
        return RunState(
            self.now,
            self.phase,
            started=self.sim is not None,
            transport_lost=self.transport_lost,
            heard_at=self.heard_at,
            listened=self.listening.at,
        )

    def apply(self, effects: Effects) -> None:
        if not effects:
            return
        for text in effects.notes:
            self.note(text)
        for batch in effects.requeue:
            self.pending.add(batch)
        for retry in effects.retries:
            self.retries.add(retry.message_id, retry.phone, retry.attempt, retry.back_at)

    # ---- decisions ----

    def _act(self, decision: Decision) -> None:
        if decision.note:
            self.note(decision.note)
        if decision.action == Action.SEND_STOPS:
            self.stopped_by = decision.reason or self.stopped_by
            self.send_stops()
        elif decision.action == Action.WARM:
            self.warm_stop(decision.reason)
        elif decision.action == Action.COLD:
            self.stopped_by = decision.reason or self.stopped_by
            self._cold_stop()
        elif decision.action == Action.REQUEUE_LOST:
            self._requeue_lost()
        elif decision.action == Action.WAIT_FOR_SENDERS and not self.waiting_noted:
            self.waiting_noted = True
            self.note(f"no sender is running: waiting for one to join{self.backend.join_hint}; Ctrl-C stops the run")

    def _requeue_lost(self) -> None:
        """A stall after a death: what no sender holds and nothing will bring back
        is queued again (see Accounts.lost_in_transit)."""
        lost = self.accounts.lost_in_transit()
        if not lost:  # nothing open that no one holds: the stall is the end
            self.stopped_by = "nothing moved after a sender died"
            self.send_stops()
            return
        for batch in lost:
            self.pending.add(batch)
        self.members.last_movement = self.now
        self.note(f"{plural(sum(map(len, lost)), 'message')} a dead sender took unsaid: re-queued")

    def send_stops(self) -> None:
        self.phase = Phase.DRAINING
        self.backend.announce(Phase.DRAINING)
        for _ in self.members.live:  # one per sender
            self.pending.add(Stop())
        self.pending.flush(self.backend.offer)
        if self.backend.drain_limit is not None:
            self.time_limit = min(self.time_limit, self.now + self.backend.drain_limit)

    def warm_stop(self, reason: str) -> None:
        if self.stopped_by == "completed":
            self.stopped_by = reason
        self.phase = Phase.WARM
        self.time_limit = self.now + WARM_STOP_SECONDS + self.backend.stop_grace
        self.backend.announce(Phase.WARM)

    def _cold_stop(self) -> None:
        self.phase = Phase.COLD
        self.members.note_hung(self.listening.look(self.now))
        self.backend.announce(Phase.COLD)
        self.backend.end_all()

    def _transport_lost(self, reason: str) -> None:
        self.transport_lost = True
        self.pending.clear()
        if self.stopped_by == "completed":
            self.stopped_by = reason
        self.note(f"{reason}; stopping with what is known")
        if self.phase == Phase.RUNNING:
            self.phase = Phase.WARM
            self.time_limit = self.now + WARM_STOP_SECONDS
        self.backend.announce(Phase.WARM)

    # ---- what the monitor sees ----

    def note(self, text: str) -> None:
        self.monitor.note(f"smsbatch: {text}")

    def snapshot(self) -> Snapshot:
        over = self.elapsed is not None
        elapsed = self.elapsed if self.elapsed is not None else self.clock.now() - self.started
        sim_now = None if over else self.sim.now() if self.sim is not None else 0.0
        pending = len(self.retries) + self.pending.retries()
        return self.accounts.snapshot(self.members.states(), elapsed, sim_now, pending, self.retries.last_at())


def situation_of(runner: Runner) -> Situation:
    """What the stop policy needs to know of a run, as plain values."""
    members = runner.members
    return Situation(
        phase=runner.phase, messages=runner.accounts.ledger.messages, final=runner.accounts.ledger.final,
        live_senders=len(members.live), signals=tuple(runner.signals), now=runner.now,
        time_limit=runner.time_limit, lost_senders=runner.accounts.lost_senders,
        producer_done=members.producer_done, work_waiting=bool(len(runner.retries) or len(runner.pending)),
        held_by_live=_held_by_live(runner),
        producer_lost=members.producer_lost, queue_broken=members.queue_broken,
        last_movement=members.last_movement, tracks_claims=runner.backend.tracks_claims,
        open_membership=runner.backend.open_membership,
    )  # fmt: skip


def _held_by_live(runner: Runner) -> int:
    """What live senders hold; summed only after a sender was lost, the one time
    the stop policy looks (every step, with hundreds of senders, it would cost)."""
    if not runner.accounts.lost_senders or not runner.backend.tracks_claims:
        return 0
    return sum(runner.accounts.ledger.held(index) for index in runner.members.live)
