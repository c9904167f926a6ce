"""A sender in real time: takes batches off the work queue and simulates sending each message.

SenderEngine is the whole loop with no process in it: it is given functions to
take work, report and pause, so tests drive it with a fake clock. run_sender()
wires it, in a child process, to a SenderPort: the queue and pipe of one
machine (local/transport.py), or Redis (broker/link.py). The loop uses three
parts: Intake (intake.py: what it takes, keeps and gives back), Slots
(slots.py: the model's slot board, sends in flight) and Outbox (outbox.py:
what it reports, and when).

It keeps to the model (docs/model.md) on a simulated timeline:

- `window` slots; a slot takes a message only when it is free, and the send
  starts at the simulated time the slot became free (or the message entered
  the queue, or the rate cap allows, whichever is latest), not when the
  process got round to it. Each send's due time is start + its drawn send
  time, and the engine sleeps until the earliest one, so overshooting a sleep
  never delays the next send.
- What each attempt takes and how it ends comes from the sender's SenderModel,
  the same draws, in the same order, as in virtual time.
- It keeps only the messages it will start before its next wake-up and gives
  the rest of a batch back at once (Released), so a slow sender never sits on
  messages a faster one could send sooner.
- Lateness is measured, not hidden: `lag` is the most simulated time by which
  it handled a due send, or started a message, after the model's time for it.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Protocol

from smsbatch.core.batching import ahead_seconds, wake_seconds
from smsbatch.core.clock import TIME_SLACK, Clock, SimClock
from smsbatch.core.model import (
    FAILED,
    INTERRUPTED,
    SENT,
    THROTTLED,
    MessageBatch,
    Released,
    SenderDone,
    Stop,
    TransportLost,
)
from smsbatch.core.sender_model import Draws, Pacer, RunOutages, SenderModel
from smsbatch.core.settings import Settings
from smsbatch.core.stats import Stats
from smsbatch.realtime.children import (
    StopSignal,
    enter_child,
    parent_alive,
    report_crash,
    stderr_line,
    termination_requested,
)
from smsbatch.realtime.intake import Intake
from smsbatch.realtime.outbox import Outbox
from smsbatch.realtime.slots import Slots

# Real seconds an idle take waits before checking for a stop (idle senders waking often cost the busy ones CPU).
IDLE_POLL_SECONDS = 0.5
WARM_STOP_GRACE = 1.0  # real seconds a warm stop waits for a send in flight


def _ahead_starts(model: SenderModel, speed: float, senders: int) -> int:
    """Starts a busy sender makes in ahead_seconds(): what it keeps of a batch
    beyond its free slots (see Intake._keep)."""
    sim_per_send = max(model.mean_send / model.window, model.start_gap, model.account_gap)
    real_per_send = sim_per_send / speed
    return 0 if real_per_send == 0 else math.floor(ahead_seconds(senders) / real_per_send)


class SenderEngine:
    """The loop: take work (keeping only what it will start soon), start it in
    free slots (Slots), finish what is due, report (Outbox)."""

    def __init__(
        self,
        index: int,
        model: SenderModel,
        settings: Settings,
        clock: SimClock,
        take: Callable[[float], MessageBatch | Stop | None],
        report: Callable[[object], None],
        pause: Callable[[float], None],
        sleep: Callable[[float], None],
        stop_requested: Callable[[], bool],
        wake: float | None = None,
        ahead: int | None = None,
        accounts: dict[str, Pacer] | None = None,
        outages: RunOutages | None = None,
        waiting: Callable[[float], None] = lambda start: None,
        sooner_elsewhere: Callable[[MessageBatch, float], bool] = lambda batch, start: False,
    ) -> None:
        self.index = index
        self.model = model
        self.draws = Draws(model)
        self.clock = clock
        self.outbox = Outbox(
            index,
            model,
            clock,
            report,
            settings.log_level in ("INFO", "DEBUG"),
            len(settings.senders),
            tracing=settings.trace is not None,
        )
        self.pause = pause  # returns early when a stop is requested
        self.sleep = sleep
        self.stop_requested = stop_requested
        self.wake = wake_seconds(len(settings.senders)) if wake is None else wake
        self.slots = Slots(model, accounts or {}, outages)
        # A real gateway: its token bucket, its pause after a throttled answer, its outages.
        self.bucket = model.bucket()
        self.gate = self.slots.pacer.gate
        self.outages = self.gate.outages if self.gate is not None else None
        first = self.outages.first_after(-1.0) if self.outages is not None else None
        self.next_outage = first if first is not None else (math.inf, math.inf)
        self.intake = Intake(
            index,
            model,
            clock,
            self.slots,
            self.wake,
            _ahead_starts(model, clock.speed, len(settings.senders)) if ahead is None else ahead,
            take=take,
            report=self.outbox.say,
            pause=pause,
            waiting=waiting,
            sooner_elsewhere=sooner_elsewhere,
            send_instantly=self._send_instantly,
            expire_all=self._expire_all,
        )
        self.backlog = self.intake.backlog  # (batch, offset) taken, not started

    @property
    def stats(self) -> Stats:
        """The stats of the attempts not reported yet."""
        return self.outbox.stats

    # ---- the loop ----

    def run(self) -> None:
        while self.step():
            pass
        self.finish()

    def step(self) -> bool:
        """One turn of the loop (its waits go through take and pause); False once it is over."""
        self.outbox.beat_if_due()
        if self.stop_requested():
            self._warm_stop()
            return False
        if self.intake.stopped_by_marker and not self.backlog and not self.slots.in_flight:
            return False
        self.intake.fill()
        self._give_back_if_closed()
        self._start_free_slots()
        self._advance()
        return True

    def finish(self) -> None:
        """Report the last of it, and say it is done."""
        self.intake.waiting(math.inf)
        self.flush()
        self.outbox.say(SenderDone(self.index))

    # ---- sending ----

    def _send_instantly(self, batch: MessageBatch) -> None:
        """The whole batch at once: the same draws and outcomes as one by one,
        without a trip round the scheduler per message. A sender that never
        waits sends each message the moment it enters the queue."""
        now = self.clock.now()
        if self.model.nothing_to_draw:  # no retries either: every message is a first attempt, at 0
            self.outbox.add_alike(batch, FAILED if self.model.fail_rate == 1.0 else SENT)
            self.outbox.note_lag(now, 0.0)
        elif batch.available is None and self.model.max_retries == 0:
            self.outbox.add_drawn(batch, *self.draws.take_many(len(batch)))
            self.outbox.note_lag(now, 0.0)
        else:
            _, failed = self.draws.take_many(len(batch))
            for offset, fail in enumerate(failed.tolist()):
                at = batch.available_at(offset)
                self.outbox.note_lag(now, at)
                self._finish(batch, offset, 0.0, self.model.outcome(batch.attempt(offset), fail), at, 0, at)
        self.outbox.flush_if_due()

    def _expire_all(self, batch: MessageBatch) -> None:
        for offset in range(len(batch)):
            self.outbox.expire(batch, offset)
        self.outbox.flush_if_due()

    def _start_free_slots(self, now: float | None = None) -> None:
        """Start the backlog's messages in the slots the model picks (SlotBoard),
        in time order: only while a start comes before the next send in flight
        ends (at a tie the send ends first, and its slot may be the one to start it)."""
        board = self.slots.board
        if not self.backlog or not len(board):
            return
        now = self.clock.now() if now is None else now
        slots = self.slots
        model = self.model
        while self.backlog and len(board):
            batch, offset = self.backlog[0]
            available = batch.available_at(offset)
            earliest = board.earliest(available)
            if slots.in_flight and (earliest >= slots.next_due() or earliest >= self.next_outage[0]):
                return  # an end, or an outage cutting sends short, comes first
            if earliest >= model.validity:  # it would start after --validity: it expires then
                if now < model.validity:
                    return  # (another sender might still start it in time: look again then)
                self.backlog.popleft()
                self.outbox.expire(batch, offset)
                continue
            if earliest > now + self._horizon():
                return  # closed (down, paused, a backup not needed) past the next wake-up
            self.backlog.popleft()
            slot, start, ready = board.take(available)
            self.outbox.capped += start - ready  # a free slot, work in hand, held back by the cap
            self.outbox.note_lag(now, start)
            seconds, fail = self.draws.take(slot)
            outcome = model.outcome(batch.attempt(offset), fail)
            if self.bucket is not None and not self.bucket.admit(start, model.segments):
                outcome = THROTTLED  # the gateway's answer, after the attempt's send time
            slots.launch(start + seconds, slot, start, batch, offset, seconds, outcome)

    def _horizon(self) -> float:
        """Simulated seconds to the next wake-up."""
        return self.wake * self.clock.speed + TIME_SLACK

    def _give_back_if_closed(self) -> None:
        """A sender whose gate is closed past its next wake-up (down, paused after a
        throttled answer, a backup while the others are up) holds no work: what it
        took and has not started goes back to the queue for the others."""
        if self.gate is None or not self.backlog or not self.intake.closed():
            return
        given: dict[int, tuple[MessageBatch, list[int]]] = {}
        for batch, offset in self.backlog:
            given.setdefault(batch.key, (batch, []))[1].append(offset)
        self.backlog.clear()
        for key, (_, offsets) in given.items():
            self.outbox.say(Released(self.index, key, tuple(offsets)))

    def _advance(self) -> None:
        """Wait for the next send to be due (or for work, or a report to be due),
        then finish what is due."""
        slots = self.slots
        intake = self.intake
        if not slots.in_flight and not self.backlog and intake.stopped_by_marker:
            return  # all done: the loop ends
        if not slots.in_flight and not self.backlog and intake.wants_work():
            self.flush()  # idle: let the monitor see everything before waiting
            intake.take(IDLE_POLL_SECONDS)
            return
        delay = IDLE_POLL_SECONDS
        if slots.in_flight:
            delay = self.clock.real_delay(slots.next_due())
            if 0 < delay < self.wake and not slots.free:
                delay = self.wake  # busy: finish several sends per wake-up
        if slots.free and self.model.gated and not intake.stopped_by_marker:
            until_open = self.clock.real_delay(slots.opens_at(self.clock.now()))
            if until_open > 0:  # the cap opens: a free slot may take work then (once open, no wait for it)
                delay = min(delay, until_open)
        if slots.in_flight and self.next_outage[0] < math.inf:  # an outage cuts its sends short then
            delay = min(delay, max(0.0, self.clock.real_delay(self.next_outage[0])))
        delay = min(delay, self._until_flush())
        if delay > 0:
            if intake.wants_work():
                intake.take(delay)  # free slots: new work may start before the next send ends
            else:
                self.pause(delay)
        self._finish_due()
        self.outbox.flush_if_due()

    def _finish_due(self) -> None:
        """Finish the sends due by now, in the model's order (due time, then
        slot); each freed slot may start the next message at its due time."""
        now = self.clock.now()
        slots = self.slots
        if slots.in_flight and slots.next_due() <= now:
            self.outbox.note_lag(now, slots.next_due())
        now_due = now + TIME_SLACK
        go_on = not self.stop_requested()  # once per wake-up, not per message
        while True:
            while slots.in_flight and slots.next_due() <= now_due and slots.next_due() <= self.next_outage[0]:
                due, slot, start, batch, offset, seconds, outcome = heapq.heappop(slots.in_flight)
                self._finish(batch, offset, seconds, outcome, due, slot, start)
                slots.board.release(slot, due)
                if self.backlog and go_on:
                    self._start_free_slots(now)
            if self.next_outage[0] > now_due:
                return
            self._go_down()

    def _go_down(self) -> None:
        """Its outage starts: every send in flight is cut short (interrupted), its
        message back to the front of the queue in the order they started."""
        down_at, up_at = self.next_outage
        slots = self.slots
        cut = sorted(slots.in_flight, key=lambda sending: (sending[2], sending[1]))  # by start, then slot
        slots.in_flight.clear()
        for _, slot, start, batch, offset, _, _ in cut:
            self._finish(batch, offset, 0.0, INTERRUPTED, down_at, slot, start)
            slots.board.release(slot, down_at)
        assert self.outages is not None
        following = self.outages.first_after(up_at)
        self.next_outage = following if following is not None else (math.inf, math.inf)

    def _finish(
        self, batch: MessageBatch, offset: int, seconds: float, outcome: int, due: float, slot: int, start: float
    ) -> None:
        if outcome == THROTTLED:  # it takes no new work for --throttle-pause from the answer
            assert self.gate is not None
            self.gate.paused_until = max(self.gate.paused_until, due + self.model.throttle_pause)
            self.outbox.paused_until = self.gate.paused_until
        self.outbox.add(batch, offset, seconds, outcome, due, slot, start)

    def _warm_stop(self) -> None:
        """Give up what has not started; finish sends due within the grace time."""
        self.backlog.clear()
        deadline = self.clock.clock.now() + WARM_STOP_GRACE
        while self.slots.in_flight:
            due_real = self.clock.clock.now() + self.clock.real_delay(self.slots.next_due())
            if due_real > deadline:
                break
            self.sleep(max(0.0, due_real - self.clock.clock.now()))
            self._finish_due()
        self.slots.in_flight.clear()

    # ---- reporting ----

    def _until_flush(self) -> float:
        return self.outbox.until_flush() if self.outbox.pending else IDLE_POLL_SECONDS

    def flush(self) -> None:
        self.outbox.flush()


class SenderPort(Protocol):
    """What a sender process works through: the queue, board and pipe of one
    machine (local/transport.py), or a link to Redis (broker/link.py)."""

    @property
    def model_key(self) -> int | str:
        """What its random draws are keyed by (SenderModel)."""

    def open(self, stopping: Callable[[], bool]) -> float | None:
        """Connect, announce, say Ready; then wait for the run's simulated time 0,
        as a monotonic time on this machine. None: stop before starting."""

    def take(self, timeout: float) -> MessageBatch | Stop | None: ...

    def report(self, item: object) -> None: ...

    def pause(self, seconds: float) -> None:
        """Wait up to `seconds`; less when a stop is asked for."""

    def waiting(self, start: float) -> None:
        """A free slot could start work at simulated time `start` (inf: not waiting)."""

    def sooner_elsewhere(self, batch: MessageBatch, start: float) -> bool:
        """Could another sender start this batch sooner than `start`?"""

    def over(self) -> bool:
        """The run is over for this sender: leave, as after a warm stop."""

    def account_caps(self) -> dict[str, Pacer]:
        """The run's shared account caps, by account name (shared with the other senders of each)."""

    def close(self) -> None: ...


class SenderPortFactory(Protocol):
    """Builds a sender's port inside its own process (a Redis connection must
    be made there, not inherited through fork)."""

    @property
    def via(self) -> str:
        """The end of the process title: how the sender gets its work."""

    def __call__(self, conn: Connection, stop_signal: StopSignal) -> SenderPort: ...


def run_sender(
    index: int,
    name: str,
    settings: Settings,
    port_factory: SenderPortFactory,
    conn: Connection,
    stop_signal: StopSignal,
    parent_pid: int,
) -> None:
    """Entry point of a sender process: a SenderEngine working through the port
    that `port_factory` builds. A transport lost (TransportLost) is one line on
    stderr and exit status 1; any other exception goes to the parent through
    `conn`, with its traceback."""
    spec = settings.senders[index]
    enter_child(f"smsbatch: {name} ({spec.describe()}){port_factory.via}", parent_pid)

    def stopping() -> bool:
        return stop_signal.is_set() or termination_requested() or not parent_alive(parent_pid)

    try:
        port = port_factory(conn, stop_signal)
        start = port.open(stopping)
        if start is not None:
            _engine(index, port, settings, start, lambda: stopping() or port.over()).run()
        port.close()
    except TransportLost as error:
        stderr_line(name)(f"{error}; leaving")
        conn.close()
        os._exit(1)
    except BaseException:
        report_crash(conn, name)
        conn.close()
        os._exit(1)


def _engine(
    index: int, port: SenderPort, settings: Settings, start: float, stopping: Callable[[], bool]
) -> SenderEngine:
    return SenderEngine(
        index,
        SenderModel(settings.senders[index], settings, port.model_key),
        settings,
        SimClock(Clock(), settings.speed, start),
        take=port.take,
        report=port.report,
        pause=port.pause,  # returns early when a warm stop is asked for
        sleep=time.sleep,
        stop_requested=stopping,
        waiting=port.waiting,
        sooner_elsewhere=port.sooner_elsewhere,
        accounts=port.account_caps(),
        outages=RunOutages(settings),
    )
