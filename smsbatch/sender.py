"""A sender: takes batches off the work queue and simulates sending each message.

SenderEngine is the whole loop with no process in it: it is given functions to
take work, report and pause, so tests drive it with a fake clock. run_sender()
wires it to the real queue, pipe and stop event in a child process.

Time is simulated and scheduled, not slept per message: each send has a due
time on a virtual timeline (start + drawn send time), and the engine sleeps
until the earliest due time. Overshooting one sleep does not delay the next
send, so a busy sender keeps pace with its own timeline. `window` sends can be
in flight at once (a heap of due times, like an event loop's timers), and
`rate` spaces out the starts.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable

from smsbatch.children import enter_child, parent_alive, report_crash, termination_requested
from smsbatch.clock import Clock, SimClock
from smsbatch.config import SenderSpec, Settings
from smsbatch.distributions import make_sampler
from smsbatch.model import (FAILED, RETRY, SENT, Claimed, Done, MessageBatch, Progress,
                            SenderDone, Stop)
from smsbatch.stats import Stats

FLUSH_SECONDS = 0.1  # real seconds between progress reports while busy (x senders / 32)
IDLE_POLL_SECONDS = 0.5  # real seconds an idle take waits before checking for a stop (idle senders waking often cost the busy ones CPU)
WARM_STOP_GRACE = 1.0  # real seconds a warm stop waits for a send in flight
# A busy sender wakes at most this often (real seconds). Sends still end at
# their exact due times on the virtual timeline: a late wake-up finishes
# every send due by then, each followed at once by the next from the backlog.
# Waking for each send of 256 senders would take the whole machine.
COALESCE_SECONDS = 0.02
DUE_SLACK = 1e-9  # simulated seconds: a send due this close to now is done (float rounding)


def sender_rng(seed: int, index: int) -> random.Random:
    """Each sender's own generator, from (run seed, sender index)."""
    return random.Random(f"{seed}/sender/{index}")


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
        spec: SenderSpec,
        settings: Settings,
        rng: random.Random,
        clock: SimClock,
        take: Callable[[float], MessageBatch | Stop | None],
        report: Callable[[object], None],
        pause: Callable[[float], None],
        sleep: Callable[[float], None],
        stop_requested: Callable[[], bool],
    ) -> None:
        self.index = index
        self.spec = spec
        self.clock = clock
        self.take = take
        self.report = report
        self.pause = pause  # returns early when a stop is requested
        self.sleep = sleep
        self.stop_requested = stop_requested
        distribution, spread = settings.distribution_of(spec)
        self.draw_time = make_sampler(distribution, spec.mean, spread, rng)
        self.draw_unit = rng.random
        self.fail_rate = spec.fail_rate
        self.max_retries = settings.max_retries
        self.logging = settings.log_level in ("INFO", "DEBUG")
        self.start_gap = 1.0 / spec.rate if spec.rate else 0.0
        # No wait and no rate cap: a batch is sent the moment it arrives, in one go.
        self.instant = spec.mean == 0.0 and not spec.rate
        # Sends that end within one coalesced wake-up; twice that is kept in the
        # backlog (ahead of need), so the chain never runs dry between wake-ups.
        sim_per_send = max(spec.mean / spec.window, self.start_gap)
        self.per_wake = 0 if self.instant else math.ceil(COALESCE_SECONDS * settings.speed / sim_per_send)
        self.next_start = 0.0  # rate limit: earliest simulated start of the next send
        self.backlog: deque[tuple[MessageBatch, int]] = deque()  # (batch, offset) not started
        self.in_flight: list[tuple] = []  # heap of (due, seq, batch, offset, seconds, outcome)
        self.idle_slots = spec.window
        self.seq = 0
        self.stopped_by_marker = False
        # Many senders report less often each, so the main process keeps up.
        self.flush_seconds = FLUSH_SECONDS * max(1.0, len(settings.senders) / 32)
        self._reset_report()

    def _reset_report(self) -> None:
        self.done = _DoneBuffer()
        self.stats = Stats()
        self.retries: list[tuple[int, str, int]] = []
        self.log: list[tuple[int, str, int, float, int]] = []
        self.phone_cache: dict[int, list[str]] = {}  # split numbers, only while needed
        self.last_flush = self.clock.clock.now()

    # ---- the loop ----

    def run(self) -> None:
        while True:
            if self.stop_requested():
                self._warm_stop()
                break
            if self.stopped_by_marker and not self.backlog and not self.in_flight:
                break
            self._fill()
            self._start_idle_slots()
            self._advance()
        self.flush()
        self.report(SenderDone(self.index))

    def _wants_work(self) -> bool:
        return not self.stopped_by_marker and len(self.backlog) < self.idle_slots + 2 * self.per_wake

    def _fill(self) -> None:
        """Take what is on the queue now: enough for every free slot, and a reserve
        so the chain of sends does not run dry before the next wake-up."""
        while self._wants_work() and self._take(0.0):
            pass

    def _take(self, timeout: float) -> bool:
        item = self.take(timeout)
        if item is None:
            return False
        if isinstance(item, Stop):
            self.stopped_by_marker = True
        else:
            self.report(Claimed(self.index, item.key))
            if self.instant:
                self._send_instantly(item)
            else:
                self.backlog.extend((item, offset) for offset in range(len(item)))
        return True

    def _send_instantly(self, batch: MessageBatch) -> None:
        """The whole batch at once: the same draws and outcomes as one by one,
        without a trip round the scheduler per message."""
        draw, fail_rate = self.draw_unit, self.fail_rate
        if batch.attempts is None and self.max_retries == 0:
            outcomes = bytes([FAILED if draw() < fail_rate else SENT for _ in batch.ids])
        else:
            outcomes = bytes([self._outcome(batch, offset) for offset in range(len(batch))])
        now = self.clock.now()
        self.stats.record_many(0.0, len(outcomes), outcomes.count(SENT), now)
        self.done.add_run(batch.key, range(len(outcomes)), outcomes)
        if RETRY in outcomes or self.logging:
            for offset, outcome in enumerate(outcomes):
                self._note(batch, offset, 0.0, outcome)
        self._flush_if_due()

    def _start_idle_slots(self) -> None:
        if not self.backlog or not self.idle_slots:
            return
        now = self.clock.now()
        while self.idle_slots and self.backlog:
            self.idle_slots -= 1
            self._start_chain(now)

    def _start_chain(self, start: float) -> None:
        """Start the next message in a free slot at `start`. While a send is
        over by now and before any other in flight (zero wait, say), go on in
        the same slot without touching the heap: sends still end in time order,
        so the rate limit hands out its start times in order too."""
        now = self.clock.now() + DUE_SLACK
        while self.backlog:
            batch, offset = self.backlog.popleft()
            start = max(start, self.next_start)
            self.next_start = start + self.start_gap
            seconds = self.draw_time()
            outcome = self._outcome(batch, offset)
            due = start + seconds
            if due > now or (self.in_flight and due > self.in_flight[0][0]):
                self.seq += 1
                heapq.heappush(self.in_flight, (due, self.seq, batch, offset, seconds, outcome))
                return
            self._finish(batch, offset, seconds, outcome, due)
            start = due
        self.idle_slots += 1

    def _outcome(self, batch: MessageBatch, offset: int) -> int:
        if self.draw_unit() >= self.fail_rate:
            return SENT
        return RETRY if batch.attempt(offset) <= self.max_retries else FAILED

    def _advance(self) -> None:
        """Wait for the next send to be due (or for work, or a report to be due),
        then finish what is due."""
        if not self.in_flight:
            if not self.backlog and self._wants_work():
                self.flush()  # idle: let the monitor see everything before waiting
                self._take(IDLE_POLL_SECONDS)
            return
        delay = self.clock.real_delay(self.in_flight[0][0])
        if not self.idle_slots and len(self.backlog) >= self.per_wake:
            delay = max(delay, COALESCE_SECONDS)
        delay = min(delay, self._until_flush(), IDLE_POLL_SECONDS)
        if delay > 0:
            if self._wants_work():
                self._take(delay)  # free slots: new work may start before the next send ends
            else:
                self.pause(delay)
        self._finish_due()
        self._flush_if_due()

    def _finish_due(self) -> None:
        now = self.clock.now() + DUE_SLACK
        go_on = not self.stop_requested()  # once per wake-up, not per message
        while self.in_flight and self.in_flight[0][0] <= now:
            due, _, batch, offset, seconds, outcome = heapq.heappop(self.in_flight)
            self._finish(batch, offset, seconds, outcome, due)
            if self.backlog and go_on:
                self._start_chain(due)  # the slot goes on from the due time, not from now
            else:
                self.idle_slots += 1

    def _finish(self, batch: MessageBatch, offset: int, seconds: float, outcome: int, due: float) -> None:
        self.stats.record(seconds, outcome == SENT, due)
        self.done.add(batch.key, offset, outcome)
        self._note(batch, offset, seconds, outcome)

    def _note(self, batch: MessageBatch, offset: int, seconds: float, outcome: int) -> None:
        """What goes round again, and what gets logged."""
        if outcome != RETRY and not self.logging:
            return
        phone = self._phones_of(batch)[offset]
        if outcome == RETRY:
            self.retries.append((batch.ids[offset], phone, batch.attempt(offset) + 1))
        if self.logging:
            self.log.append((batch.ids[offset], phone, outcome, seconds, batch.attempt(offset)))

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
        return self.last_flush + self.flush_seconds - self.clock.clock.now()

    def _flush_if_due(self) -> None:
        if self._pending() and self._until_flush() <= 0:
            self.flush()

    def flush(self) -> None:
        if self._pending():
            self.report(Progress(self.index, self.done.drain(), self.stats,
                                 tuple(self.retries), tuple(self.log)))
        self._reset_report()


def run_sender(index: int, settings: Settings, transport, conn, stop_signal, parent_pid: int) -> None:
    """Entry point of a sender process."""
    spec = settings.senders[index]
    enter_child(f"smsbatch: sender {index + 1} ({spec.describe()})", parent_pid)
    try:
        engine = SenderEngine(
            index, spec, settings, sender_rng(settings.seed, index),
            SimClock(Clock(), settings.speed),
            take=transport.taker(index),
            report=conn.send,
            pause=stop_signal.wait,  # returns early when a warm stop is asked for
            sleep=time.sleep,
            stop_requested=lambda: (stop_signal.is_set() or termination_requested()
                                    or not parent_alive(parent_pid)),
        )
        engine.run()
    except BaseException:
        report_crash(conn, f"sender {index + 1}")
        os._exit(1)
    finally:
        conn.close()
