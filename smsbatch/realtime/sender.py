"""A sender in real time: takes batches off the work queue and simulates sending each message.

SenderEngine is the whole loop with no process in it: it is given functions to
take work, report and pause, so tests drive it with a fake clock. run_sender()
wires it, in a child process, to a SenderPort: the queue and pipe of one
machine (local/transport.py), or Redis (broker/link.py).

It keeps to the model (README, "The model") on a simulated timeline:

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
from collections import deque
from collections.abc import Callable
from typing import Protocol

from smsbatch.config import Settings
from smsbatch.core.clock import Clock, SimClock
from smsbatch.core.model import (
    FAILED,
    RETRY,
    SENT,
    Beat,
    Claimed,
    Done,
    MessageBatch,
    Progress,
    Released,
    SenderDone,
    Stop,
    TransportLost,
)
from smsbatch.core.sender_model import Draws, SenderModel
from smsbatch.core.stats import Stats, bucket_of
from smsbatch.realtime.children import enter_child, parent_alive, report_crash, stderr_line, termination_requested

FLUSH_SECONDS = 0.1  # real seconds between progress reports while busy (x senders / 32)
# Real seconds an idle take waits before checking for a stop (idle senders waking often cost the busy ones CPU).
IDLE_POLL_SECONDS = 0.5
WARM_STOP_GRACE = 1.0  # real seconds a warm stop waits for a send in flight
BEAT_SECONDS = 0.5  # real seconds a sender may say nothing before it says it is alive
DEFER_PAUSE_SECONDS = 0.001  # real seconds: after giving a batch back for another sender
RETRY_MARGIN_SECONDS = 0.002  # real seconds: report a retry this long before it is due back
DUE_SLACK = 1e-9  # simulated seconds: a send due this close to now is done (float rounding)


def ahead_seconds(senders: int) -> float:
    """Real seconds of work a busy sender keeps beyond its free slots: two
    wake-ups, and more with many senders (0.4 ms each), so that hundreds of
    them do not flood the runner with a report per few messages taken."""
    return max(2 * wake_seconds(senders), 0.0004 * senders)


def wake_seconds(senders: int) -> float:
    """How often, at most, a busy sender wakes (real seconds). Sends still end
    at their exact due times; a late wake-up finishes every send due by then,
    each followed by the next. Short for a few senders (little lateness),
    longer for hundreds (waking each for every send would take the machine)."""
    return min(0.02, max(0.002, 0.0005 * senders))


class _DoneBuffer:
    """Finished attempts since the last report, grouped by batch."""

    def __init__(self) -> None:
        self.offsets: dict[int, list[int]] = {}
        self.outcomes: dict[int, bytearray] = {}
        self.in_order: dict[int, bool] = {}

    def add(self, key: int, offset: int, outcome: int) -> None:
        offsets = self.offsets.get(key)
        if offsets is None:
            self.offsets[key] = [offset]
            self.outcomes[key] = bytearray((outcome,))
            self.in_order[key] = True
            return
        if offset != offsets[-1] + 1:
            self.in_order[key] = False
        offsets.append(offset)
        self.outcomes[key].append(outcome)

    def add_run(self, key: int, offsets: range, outcomes: bytes) -> None:
        existing = self.offsets.get(key)
        if existing is None:
            self.offsets[key] = list(offsets)
            self.outcomes[key] = bytearray(outcomes)
            self.in_order[key] = True
            return
        if offsets.start != existing[-1] + 1:
            self.in_order[key] = False
        existing.extend(offsets)
        self.outcomes[key] += outcomes

    def drain(self) -> tuple[Done, ...]:
        done = tuple(
            Done(
                key,
                range(offsets[0], offsets[-1] + 1) if self.in_order[key] else tuple(offsets),
                bytes(self.outcomes[key]),
            )
            for key, offsets in self.offsets.items()
        )
        self.offsets, self.outcomes, self.in_order = {}, {}, {}
        return done


class SenderEngine:
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
        waiting: Callable[[float], None] = lambda start: None,
        sooner_elsewhere: Callable[[MessageBatch, float], bool] = lambda batch, start: False,
    ) -> None:
        self.index = index
        self.model = model
        self.draws = Draws(model)
        self.clock = clock
        self.take = take
        self.send_report = report
        self.pause = pause  # returns early when a stop is requested
        self.sleep = sleep
        self.stop_requested = stop_requested
        self.waiting = waiting  # posts when a free slot could start work it waits for (inf: not waiting)
        self.sooner_elsewhere = sooner_elsewhere  # could another sender start this batch first?
        self.logging = settings.log_level in ("INFO", "DEBUG")
        self.wake = wake_seconds(len(settings.senders)) if wake is None else wake
        # Starts it makes in ahead_seconds(), once busy: what it keeps of a
        # batch beyond its free slots (see _take).
        sim_per_send = max(model.spec.mean / model.window, model.start_gap)
        real_per_send = sim_per_send / clock.speed
        ahead = ahead_seconds(len(settings.senders))
        self.ahead = 0 if real_per_send == 0 else math.floor(ahead / real_per_send)
        self.next_start = 0.0  # rate cap: earliest simulated start of the next send
        self.backlog: deque[tuple[MessageBatch, int]] = deque()  # (batch, offset) not started
        self.in_flight: list[tuple] = []  # heap of (due, seq, batch, offset, seconds, outcome)
        self.free: list[float] = [0.0] * model.window  # heap: simulated time each free slot became free
        self.seq = 0
        self.lag = 0.0
        self.last_said = clock.clock.now()
        self.stopped_by_marker = False
        # Many senders report less often each, so the main process keeps up.
        self.flush_seconds = FLUSH_SECONDS * max(1.0, len(settings.senders) / 32)
        self._reset_report()

    def _reset_report(self) -> None:
        self.done = _DoneBuffer()
        self.stats = Stats()
        self.retries: list[tuple[int, str, int, float]] = []
        self.first_back = math.inf  # the earliest simulated time a retry here re-enters the queue
        self.log: list[tuple[int, str, int, float, int]] = []
        self.ended: list[tuple[float, float, int, int]] = []
        self.capped = 0.0
        self.phone_cache: dict[int, list[str]] = {}  # split numbers, only while needed
        self.last_flush = self.clock.clock.now()

    # ---- the loop ----

    def report(self, item: object) -> None:
        self.last_said = self.clock.clock.now()
        self.send_report(item)

    def _beat_if_due(self) -> None:
        """Say it is alive when it has said nothing for a while: a slow send
        must never look like a hung sender (the loop comes round at least
        every IDLE_POLL_SECONDS, mid-send too)."""
        if self.clock.clock.now() - self.last_said >= BEAT_SECONDS:
            self.report(Beat(self.index))

    def run(self) -> None:
        while True:
            self._beat_if_due()
            if self.stop_requested():
                self._warm_stop()
                break
            if self.stopped_by_marker and not self.backlog and not self.in_flight:
                break
            self._fill()
            self._start_free_slots()
            self._advance()
        self.waiting(math.inf)
        self.flush()
        self.report(SenderDone(self.index))

    def _wants_work(self) -> bool:
        """Room for what it would start now or within its next wake-ups: a busy
        sender tops up before it runs dry, a slow one takes only for free slots."""
        return not self.stopped_by_marker and len(self.backlog) < self._startable() + self.ahead

    def _startable(self) -> int:
        """Free slots that can start a message before the next wake-up: a slot
        waiting for the rate cap holds nothing, as in the model."""
        gap = self.model.start_gap
        if not gap:
            return len(self.free)
        horizon = self.clock.now() + self.wake * self.clock.speed
        if self.next_start > horizon:
            return 0
        return min(len(self.free), 1 + int((horizon - self.next_start) / gap))

    def _fill(self) -> None:
        """Take what is on the queue now, for every free slot."""
        while self._wants_work() and self._take(0.0):
            pass

    def _take(self, timeout: float) -> bool:
        start = self._start_if_taken()
        idle = bool(self.free) and not self.backlog and self._startable() > 0
        self.waiting(start if idle else math.inf)  # the same time it judges the batch by: no ping-pong
        item = self.take(timeout)
        if item is None:
            return False
        self.waiting(math.inf)
        if isinstance(item, Stop):
            self.stopped_by_marker = True
            return True
        self.report(Claimed(self.index, item.key))
        if self.sooner_elsewhere(item, start):  # the model gives it to another: back it goes, whole
            self.report(Released(self.index, item.key, tuple(range(len(item)))))
            self.pause(DEFER_PAUSE_SECONDS)  # the one it is for takes it, not this one again
            return False
        if self.model.instant:
            self._send_instantly(item)
            return True
        # Up to twice what it tops up to: a fast sender keeps whole batches, a
        # slow one (ahead 0) only what its free slots start now.
        kept = max(0, min(len(item), self._startable() + 2 * self.ahead - len(self.backlog)))
        if kept < len(item):
            self.report(Released(self.index, item.key, tuple(range(kept, len(item)))))
        self.backlog.extend((item, offset) for offset in range(kept))
        return True

    def _send_instantly(self, batch: MessageBatch) -> None:
        """The whole batch at once: the same draws and outcomes as one by one,
        without a trip round the scheduler per message. A sender that never
        waits sends each message the moment it enters the queue."""
        now = self.clock.now()
        if self.model.nothing_to_draw:  # no retries either: every message is a first attempt, at 0
            self._send_all_alike(batch, now)
            return
        seconds, failed = self.draws.take_many(len(batch))
        if batch.available is None and self.model.max_retries == 0:
            outcomes = failed.astype("u1") + 1  # SENT 1, FAILED 2
            self.stats.record_block(seconds, failed)
            self.done.add_run(batch.key, range(len(batch)), outcomes.tobytes())
            self._note_lag(now, 0.0)
            fails = int(failed.sum())
            self.ended += [
                (0.0, 0.0, outcome, count) for outcome, count in ((SENT, len(batch) - fails), (FAILED, fails)) if count
            ]
            if self.logging:
                for offset, outcome in enumerate(outcomes.tolist()):
                    self._note(batch, offset, 0.0, outcome, 0.0)
            self._flush_if_due()
            return
        for offset, fail in enumerate(failed.tolist()):
            at = batch.available_at(offset)
            self._note_lag(now, at)
            self._finish(batch, offset, 0.0, self._outcome(batch, offset, fail), at)
        self._flush_if_due()

    def _start_if_taken(self) -> float:
        """The simulated time a message taken now would start here."""
        if self.backlog:
            return math.inf  # after what it holds: anyone waiting now comes first
        start = self.free[0] if self.free else (self.in_flight[0][0] if self.in_flight else self.clock.now())
        return max(start, self.next_start) if self.model.start_gap else start

    def _send_all_alike(self, batch: MessageBatch, now: float) -> None:
        """Zero wait, and every send succeeds (or every one fails for good): nothing to draw."""
        count = len(batch)
        outcome = FAILED if self.model.fail_rate == 1.0 else SENT
        self.stats.record_same(0.0, count, count if outcome == FAILED else 0)
        self.done.add_run(batch.key, range(count), bytes([outcome]) * count)
        self._note_lag(now, 0.0)
        self.ended.append((0.0, 0.0, outcome, count))
        if self.logging:
            for offset in range(count):
                self._note(batch, offset, 0.0, outcome, 0.0)
        self._flush_if_due()

    def _start_free_slots(self) -> None:
        if not self.backlog or not self.free:
            return
        now = self.clock.now()
        while self.free and self.backlog:
            self._start_chain(heapq.heappop(self.free), now)

    def _start_chain(self, free_since: float, now: float) -> None:
        """Start the next message in a slot free since `free_since`. While a send
        is over by now and before any other in flight (zero wait, say), go on in
        the same slot without touching the heap: sends still end in time order,
        so the rate cap hands out its start times in order too."""
        now_due = now + DUE_SLACK
        start = free_since
        while self.backlog:
            batch, offset = self.backlog.popleft()
            start = max(start, batch.available_at(offset))
            if self.model.start_gap:  # starts in time order: the cap hands them out in turn
                ready, start = start, max(start, self.next_start)
                self.capped += start - ready  # a free slot, work in hand, held back by the cap
                self.next_start = start + self.model.start_gap
            self._note_lag(now, start)
            seconds, fail = self.draws.take()
            outcome = self._outcome(batch, offset, fail)
            due = start + seconds
            if due > now_due or (self.in_flight and due > self.in_flight[0][0]):
                self.seq += 1
                heapq.heappush(self.in_flight, (due, self.seq, batch, offset, seconds, outcome))
                return
            self._finish(batch, offset, seconds, outcome, due)
            start = due
        heapq.heappush(self.free, start)

    def _outcome(self, batch: MessageBatch, offset: int, fail: bool) -> int:
        if not fail:
            return SENT
        return RETRY if self.model.retries_left(batch.attempt(offset)) else FAILED

    def _note_lag(self, now: float, scheduled: float) -> None:
        if now - scheduled > self.lag:
            self.lag = now - scheduled

    def _advance(self) -> None:
        """Wait for the next send to be due (or for work, or a report to be due),
        then finish what is due."""
        if not self.in_flight and not self.backlog and self.stopped_by_marker:
            return  # all done: the loop ends
        if not self.in_flight and not self.backlog and self._wants_work():
            self.flush()  # idle: let the monitor see everything before waiting
            self._take(IDLE_POLL_SECONDS)
            return
        delay = IDLE_POLL_SECONDS
        if self.in_flight:
            delay = self.clock.real_delay(self.in_flight[0][0])
            if 0 < delay < self.wake and not self.free:
                delay = self.wake  # busy: finish several sends per wake-up
        if self.free and self.model.start_gap and not self.stopped_by_marker:
            delay = min(delay, self.clock.real_delay(self.next_start))  # the cap opens
        delay = min(delay, self._until_flush())
        if delay > 0:
            if self._wants_work():
                self._take(delay)  # free slots: new work may start before the next send ends
            else:
                self.pause(delay)
        self._finish_due()
        self._flush_if_due()

    def _finish_due(self) -> None:
        now = self.clock.now()
        if self.in_flight and self.in_flight[0][0] <= now:
            self._note_lag(now, self.in_flight[0][0])
        now_due = now + DUE_SLACK
        go_on = not self.stop_requested()  # once per wake-up, not per message
        while self.in_flight and self.in_flight[0][0] <= now_due:
            due, _, batch, offset, seconds, outcome = heapq.heappop(self.in_flight)
            self._finish(batch, offset, seconds, outcome, due)
            if self.backlog and go_on:
                self._start_chain(due, now)  # the slot goes on from the due time, not from now
            else:
                heapq.heappush(self.free, due)

    def _finish(self, batch: MessageBatch, offset: int, seconds: float, outcome: int, due: float) -> None:
        bucket = bucket_of(seconds)
        self.stats.record(seconds, outcome == SENT, due, bucket)
        self.done.add(batch.key, offset, outcome)
        self.ended.append((due, bucket, outcome, 1))
        self._note(batch, offset, seconds, outcome, due)

    def _note(self, batch: MessageBatch, offset: int, seconds: float, outcome: int, due: float) -> None:
        """What goes round again, and what gets logged."""
        if outcome != RETRY and not self.logging:
            return
        phone = self._phones_of(batch)[offset]
        attempt = batch.attempt(offset)
        if outcome == RETRY:
            back_at = due + self.model.retry_delay(attempt)
            self.retries.append((batch.ids[offset], phone, attempt + 1, back_at))
            self.first_back = min(self.first_back, back_at)
        if self.logging:
            self.log.append((batch.ids[offset], phone, outcome, seconds, attempt))

    def _phones_of(self, batch: MessageBatch) -> list[str]:
        phones = self.phone_cache.get(batch.key)
        if phones is None:
            phones = self.phone_cache[batch.key] = batch.phones()
        return phones

    def _warm_stop(self) -> None:
        """Give up what has not started; finish sends due within the grace time."""
        self.backlog.clear()
        deadline = self.clock.clock.now() + WARM_STOP_GRACE
        while self.in_flight:
            due_real = self.clock.clock.now() + self.clock.real_delay(self.in_flight[0][0])
            if due_real > deadline:
                break
            self.sleep(max(0.0, due_real - self.clock.clock.now()))
            self._finish_due()
        self.in_flight.clear()

    # ---- reporting ----

    def _pending(self) -> bool:
        return self.stats.attempts > 0

    def _until_flush(self) -> float:
        if not self._pending():
            return IDLE_POLL_SECONDS
        until = self.last_flush + self.flush_seconds - self.clock.clock.now()
        # A retry must reach the runner before its time to re-enter the queue.
        return min(until, self.clock.real_delay(self.first_back) - RETRY_MARGIN_SECONDS)

    def _flush_if_due(self) -> None:
        if self._pending() and self._until_flush() <= 0:
            self.flush()

    def flush(self) -> None:
        if self._pending():
            self.report(
                Progress(
                    self.index,
                    self.done.drain(),
                    self.stats,
                    tuple(self.retries),
                    tuple(self.log),
                    tuple(self.ended),
                    self.lag,
                    self.capped,
                )
            )
        self._reset_report()


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

    def close(self) -> None: ...


class SenderPortFactory(Protocol):
    """Builds a sender's port inside its own process (a Redis connection must
    be made there, not inherited through fork)."""

    @property
    def via(self) -> str:
        """The end of the process title: how the sender gets its work."""

    def __call__(self, conn, stop_signal) -> SenderPort: ...


def run_sender(
    index: int,
    name: str,
    settings: Settings,
    port_factory: SenderPortFactory,
    conn,
    stop_signal,
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


def _engine(index: int, port: SenderPort, settings: Settings, start: float, stopping) -> SenderEngine:
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
    )
