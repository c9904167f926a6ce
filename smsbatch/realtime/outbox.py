"""What a real-time sender tells the runner, and when.

Everything it says goes through its Outbox (so it knows when it last spoke,
and says it is alive when it has been quiet too long). Its Progress reports
gather the attempts finished since the last one (grouped by batch, for the
ledger), their stats, their ends (for the timeline), the retries (which must
reach the runner before they are due back in the queue), its lag and, at
--log INFO, a line per attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from smsbatch.core.clock import SimClock
from smsbatch.core.model import (
    EXPIRED,
    FAILED,
    INTERRUPTED,
    RETRY,
    ROUND,
    SENT,
    THROTTLED,
    Beat,
    Done,
    MessageBatch,
    Progress,
)
from smsbatch.core.receipts import NO_RECEIPT
from smsbatch.core.sender_model import ReceiptDraws, SenderModel
from smsbatch.core.stats import Stats, bucket_of

if TYPE_CHECKING:
    import numpy as np  # only for the types: a run with nothing to draw never loads numpy

# A trace row as a sender keeps it: (slot, attempt, start, end, outcome[, receipt time]).
SenderTraceRow = tuple[int, int, float, float, int] | tuple[int, int, float, float, int, float | None]

FLUSH_SECONDS = 0.1  # real seconds between progress reports while busy (x senders / 32)
BEAT_SECONDS = 0.5  # real seconds a sender may say nothing before it says it is alive
RETRY_MARGIN_SECONDS = 0.002  # real seconds: report a retry this long before it is due back
DUE_SLACK_SECONDS = 1e-9  # real seconds: a report due this soon is due now


class DoneBuffer:
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


class Outbox:
    done: DoneBuffer
    stats: Stats
    retries: list[tuple[int, str, int, float]]  # (id, phone, next attempt, simulated time it is back)
    first_back: float  # the earliest simulated time a retry here re-enters the queue
    log: list[tuple[int, str, int, float, int]]  # (id, phone, outcome, seconds, attempt)
    ended: list[tuple[float, int, int, int]]  # (due, send-time bucket, outcome, count)
    capped: float  # slot-seconds a free slot with work in hand was held back by the rate cap
    trace: list[SenderTraceRow] | None  # --trace: (slot, attempt, start, end, outcome[, receipt])
    receipts: list[tuple[float, int]]  # (when its receipt comes, what it says) of each message accepted
    phone_cache: dict[int, list[str]]  # batch key -> its numbers, split only while needed
    last_flush: float  # real time of the last report

    def __init__(
        self,
        index: int,
        model: SenderModel,
        clock: SimClock,
        send: Callable[[object], None],
        logging: bool,
        senders: int,
        tracing: bool = False,
    ) -> None:
        self.index = index
        self.model = model
        self.clock = clock
        self.send = send
        self.logging = logging
        self.tracing = tracing  # --trace: a row per attempt
        # Delivery receipts: each accepted message's, drawn as it is accepted (as in virtual time).
        self.receipt_draws = ReceiptDraws(model) if model.receipts else None
        # Many senders report less often each, so the main process keeps up.
        self.flush_seconds = FLUSH_SECONDS * max(1.0, senders / 32)
        # The most simulated time by which a due send was handled, or a message started, late.
        self.lag = 0.0
        self.paused_until = 0.0  # its pause after a throttled answer, as the sender last set it
        self.last_said = clock.clock.now()
        self.clear()

    def clear(self) -> None:
        """Start afresh, after a report."""
        self.done = DoneBuffer()
        self.stats = Stats()
        self.retries = []
        self.first_back = math.inf
        self.log = []
        self.ended = []
        self.capped = 0.0
        self.trace = [] if self.tracing else None
        self.receipts = []
        self.phone_cache = {}
        self.last_flush = self.clock.clock.now()

    # ---- filling ----

    def note_lag(self, now: float, scheduled: float) -> None:
        if now - scheduled > self.lag:
            self.lag = now - scheduled

    def add(
        self, batch: MessageBatch, offset: int, seconds: float, outcome: int, due: float, slot: int, start: float
    ) -> None:
        """One attempt, started in `slot` at `start` and ended at the simulated time `due`."""
        if outcome in (THROTTLED, INTERRUPTED):
            self._went_round(batch, offset, outcome, due, slot, start)
            return
        bucket = bucket_of(seconds)
        self.stats.record(seconds, outcome == SENT, due, bucket)
        row = outcome
        if outcome == RETRY and due > self.model.validity:  # it would wait for a retry after --validity
            outcome = row = EXPIRED
        elif outcome == RETRY:
            back_at = due + self.model.retry_delay(batch.attempt(offset))
            if back_at >= self.model.validity:
                outcome = EXPIRED  # it waits for its retry at --validity, and expires then
            else:
                self._back(batch, offset, batch.entry(offset) + 1, back_at)
        self.done.add(batch.key, offset, outcome)
        self.ended.append((due, bucket, outcome, 1))
        receipt = self.receipt_draws.take(due) if outcome == SENT and self.receipt_draws is not None else None
        if receipt is not None:
            self.receipts.append(receipt)
        if self.trace is not None and receipt is not None:  # its row says when its receipt comes
            self.trace.append(
                (slot, batch.attempt(offset), start, due, row, receipt[0] if receipt[1] != NO_RECEIPT else None)
            )
        elif self.trace is not None:
            self.trace.append((slot, batch.attempt(offset), start, due, row))
        self._note(batch, offset, seconds, outcome, due)

    def _went_round(self, batch: MessageBatch, offset: int, outcome: int, at: float, slot: int, start: float) -> None:
        """A throttled answer at `at`, or a send its outage cut short then: no
        attempt, no retry used; back to the queue at once (after --validity it expires)."""
        if outcome == THROTTLED:
            self.stats.throttled += 1
        else:
            self.stats.interrupted += 1
        expired = at >= self.model.validity
        row = EXPIRED if outcome == THROTTLED and at > self.model.validity else outcome
        if self.trace is not None:
            self.trace.append((slot, batch.attempt(offset), start, at, row))
        self.ended.append((at, bucket_of(0.0), outcome, 1))  # (the timeline counts it)
        if expired:
            self.done.add(batch.key, offset, EXPIRED)
            self.ended.append((at, bucket_of(0.0), EXPIRED, 1))
            self.stats.last_end = max(self.stats.last_end, at)  # a final outcome: the run lasts to it
        else:
            self.done.add(batch.key, offset, outcome)
            self._back(batch, offset, batch.entry(offset) + ROUND, at)

    def expire(self, batch: MessageBatch, offset: int) -> None:
        """A message not started before --validity: it expires then, unattempted."""
        self.done.add(batch.key, offset, EXPIRED)
        self.ended.append((self.model.validity, bucket_of(0.0), EXPIRED, 1))
        self.stats.last_end = max(self.stats.last_end, self.model.validity)

    def _back(self, batch: MessageBatch, offset: int, entry: int, back_at: float) -> None:
        """It goes round again: back in the queue at `back_at` as `entry` (MessageBatch.entry)."""
        self.retries.append((batch.ids[offset], self._phones_of(batch)[offset], entry, back_at))
        self.first_back = min(self.first_back, back_at)

    def _trace_first_attempts(self, outcomes: list[int]) -> None:
        """A batch of first attempts that took no time at 0, in slot 0 (as the model runs them)."""
        draws = self.receipt_draws
        if draws is None:
            if self.trace is not None:
                self.trace += [(0, 1, 0.0, 0.0, outcome) for outcome in outcomes]
            return
        for outcome in outcomes:
            receipt = draws.take(0.0) if outcome == SENT else None
            if receipt is not None:
                self.receipts.append(receipt)
            if self.trace is not None and receipt is not None:
                self.trace.append((0, 1, 0.0, 0.0, outcome, receipt[0] if receipt[1] != NO_RECEIPT else None))
            elif self.trace is not None:
                self.trace.append((0, 1, 0.0, 0.0, outcome))

    def add_alike(self, batch: MessageBatch, outcome: int) -> None:
        """A whole batch of first attempts at time 0 that took no time and all ended alike."""
        count = len(batch)
        self.stats.record_same(0.0, count, count if outcome == FAILED else 0)
        self.done.add_run(batch.key, range(count), bytes([outcome]) * count)
        self.ended.append((0.0, bucket_of(0.0), outcome, count))
        self._trace_first_attempts([outcome] * count)
        if self.logging:
            for offset in range(count):
                self._note(batch, offset, 0.0, outcome, 0.0)

    def add_drawn(self, batch: MessageBatch, seconds: np.ndarray, failed: np.ndarray) -> None:
        """A whole batch of first attempts at time 0, with no retries: drawn send times
        (all zero: it never waits) and outcomes."""
        outcomes = failed.astype("u1") + 1  # SENT 1, FAILED 2
        self.stats.record_block(seconds, failed)
        self.done.add_run(batch.key, range(len(batch)), outcomes.tobytes())
        fails, zero = int(failed.sum()), bucket_of(0.0)
        self.ended += [
            (0.0, zero, outcome, count) for outcome, count in ((SENT, len(batch) - fails), (FAILED, fails)) if count
        ]
        if self.trace is not None:
            self._trace_first_attempts(outcomes.tolist())
        if self.logging:
            for offset, outcome in enumerate(outcomes.tolist()):
                self._note(batch, offset, 0.0, outcome, 0.0)

    def _note(self, batch: MessageBatch, offset: int, seconds: float, outcome: int, due: float) -> None:
        """What gets logged (at --log INFO)."""
        if self.logging:
            phone = self._phones_of(batch)[offset]
            self.log.append((batch.ids[offset], phone, outcome, seconds, batch.attempt(offset)))

    def _phones_of(self, batch: MessageBatch) -> list[str]:
        phones = self.phone_cache.get(batch.key)
        if phones is None:
            phones = self.phone_cache[batch.key] = batch.phones()
        return phones

    # ---- saying ----

    def say(self, item: object) -> None:
        self.last_said = self.clock.clock.now()
        self.send(item)

    def beat_if_due(self) -> None:
        """Say it is alive when it has said nothing for a while: a slow send
        must never look like a hung sender (the loop comes round at least
        every IDLE_POLL_SECONDS, mid-send too)."""
        if self.clock.clock.now() - self.last_said >= BEAT_SECONDS:
            self.say(Beat(self.index))

    @property
    def pending(self) -> bool:
        """Anything to report: attempts, or messages that went round or expired without one."""
        return self.stats.attempts > 0 or bool(self.done.offsets)

    def until_flush(self) -> float:
        """Real seconds until the next report is due (when something is pending)."""
        until = self.last_flush + self.flush_seconds - self.clock.clock.now()
        # A retry must reach the runner before its time to re-enter the queue.
        return min(until, self.clock.real_delay(self.first_back) - RETRY_MARGIN_SECONDS)

    def flush_if_due(self) -> None:
        # A nanosecond early is on time: a wait shorter than that does not move a clock (a fake one, in tests).
        if self.pending and self.until_flush() <= DUE_SLACK_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Report what is pending, if anything, and start afresh."""
        if self.pending:
            self.say(
                Progress(
                    self.index,
                    self.done.drain(),
                    self.stats,
                    tuple(self.retries),
                    tuple(self.log),
                    tuple(self.ended),
                    self.lag,
                    self.capped,
                    trace=tuple(self.trace or ()),
                    receipts=tuple(self.receipts),
                    paused_until=self.paused_until,
                )
            )
        self.clear()
