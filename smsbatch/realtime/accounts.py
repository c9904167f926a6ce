"""The accounts of a real-time run: every message's fate (the ledger), what
each sender holds, the statistics per sender, and the run's record over
simulated time. Fed by reports in any order, from any backend; pure
bookkeeping, no processes and no clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from smsbatch.core.ledger import OPEN, Ledger
from smsbatch.core.model import (
    EXPIRED,
    FAILED,
    INTERRUPTED,
    RETRY,
    SENT,
    THROTTLED,
    Claimed,
    MessageBatch,
    Progress,
    Released,
)
from smsbatch.core.receipts import ReceiptCount, ReceiptFigures
from smsbatch.core.sender_model import RunOutages
from smsbatch.core.settings import SenderSpec, Settings
from smsbatch.core.snapshot import SenderView, Snapshot
from smsbatch.core.source import MessageSource
from smsbatch.core.stats import Stats
from smsbatch.core.timeline import RunRecord, TimelineTable, first_width
from smsbatch.core.trace import TraceRow
from smsbatch.realtime.retries import Retry

message_log = logging.getLogger("smsbatch.messages")
OUTCOME_WORDS = {
    SENT: "sent",
    FAILED: "failed",
    RETRY: "failed, will retry",
    THROTTLED: "throttled, goes round again",
    INTERRUPTED: "interrupted, goes round again",
    EXPIRED: "expired",
}


def _outcome_counts(ended: Sequence[tuple[float, int, int, int]]) -> dict[int, int]:
    """Attempts by outcome, of (due, bucket, outcome, count) ends."""
    counts = dict.fromkeys(OUTCOME_WORDS, 0)
    for _, _, outcome, count in ended:
        counts[outcome] += count
    return counts


class Accounts:
    def __init__(self, settings: Settings, source: MessageSource, tracks_claims: bool) -> None:
        self.settings = settings
        self.source = source
        self.tracks_claims = tracks_claims
        self.ledger = Ledger(source.messages)
        self.names: list[str] = []
        self.specs: list[SenderSpec] = []
        self.stats: list[Stats] = []
        self.record = RunRecord([], first_width(settings, source.messages), settings.deadline)
        self.reissued: dict[int, MessageBatch] = {}  # batches the runner made, by key (< 0)
        self.next_key = -1
        self.requeued = 0  # messages a lost sender held, put back on the queue
        self.redelivered = 0  # messages the transport took over from silent senders
        self.lost_senders = 0
        self.sampled_bin = -1  # the timeline bin whose backlog and in-flight were last sampled
        self.trace: list[TraceRow] | None = [] if settings.trace else None  # --trace: every attempt's row
        self.receipts = (
            ReceiptCount(source.messages, settings.deadline, settings.validity or math.inf, self.record.timeline)
            if settings.receipts
            else None
        )
        self.outages = RunOutages(settings)  # every sender's outages, for their downtime
        self.paused_until: dict[int, float] = {}  # per sender: its pause after a throttled answer, as last heard

    def add_sender(self, name: str, spec: SenderSpec) -> int:
        self.names.append(name)
        self.specs.append(spec)
        self.stats.append(Stats())
        if len(self.names) > len(self.record.timeline.names):
            self.record.add_sender(name)
        return len(self.names) - 1

    # ---- reports ----

    def claim(self, report: Claimed) -> None:
        ids = self.source.ids(report.key) if report.key >= 0 else self.reissued[report.key].ids
        self.ledger.claim(report.sender, report.key, ids)

    def progress(self, report: Progress) -> list[Retry]:
        """Count a report; returns the retries it asks for (each asked for once)."""
        self.stats[report.sender].merge(report.stats)
        ledger = self.ledger
        sent, failed, expired = ledger.sent, ledger.failed, ledger.expired
        for done in report.done:
            if done.key is None:  # message ids, from a transport that keeps the claims itself
                ledger.record(done.offsets, done.outcomes)
            elif ledger.apply(report.sender, done) and done.key < 0:
                self.reissued.pop(done.key, None)
        self.redelivered += report.redelivered
        if self.trace is not None:
            self.trace += [(report.sender, *row) for row in report.trace]
        if self.receipts is not None:
            for time, kind in report.receipts:
                self.receipts.add(time, kind)
        if report.log:
            self._log(self.names[report.sender], report.log)
        retried = ledger.retried
        retries = [
            Retry(back_at, message_id, phone, entry)
            for message_id, phone, entry, back_at in report.retries
            if ledger.retry(message_id, entry)
        ]
        # The timeline, reach times and deadline are fed after the ledger, with
        # what it did not count (duplicates), so they count each message once.
        repeats = _outcome_counts(report.ended)
        repeats[SENT] -= ledger.sent - sent
        repeats[FAILED] -= ledger.failed - failed
        repeats[RETRY] -= ledger.retried - retried  # (the rest went round without a retry)
        repeats[EXPIRED] -= ledger.expired - expired
        repeats[THROTTLED] = repeats[INTERRUPTED] = 0  # (a go-round heard twice is caught by ledger.retry)
        self.record.record(report.sender, report.ended, report.capped, report.lag, repeats)
        if report.paused_until:
            self.paused_until[report.sender] = max(self.paused_until.get(report.sender, 0.0), report.paused_until)
        return retries

    @staticmethod
    def _log(name: str, log: Sequence[tuple[int, str, int, float, int]]) -> None:
        for message_id, phone, outcome, seconds, attempt in log:
            message_log.info(
                "message %d to %s %s by %s in %.3fs (attempt %d)",
                message_id, phone, OUTCOME_WORDS[outcome], name, seconds, attempt,
            )  # fmt: skip

    def release_part(self, report: Released) -> MessageBatch | None:
        """A live sender gave back part of a batch: the part to queue again."""
        offsets = self.ledger.release_part(report.sender, report.key, report.offsets)
        done = report.key not in self.ledger.claims[report.sender]
        return self._part(report.key, offsets, done)

    def release(self, sender: int) -> list[MessageBatch]:
        """A sender is gone: what it held and never reported, to queue again."""
        parts = [self._part(key, offsets) for key, offsets in self.ledger.release(sender).items()]
        batches = [part for part in parts if part is not None]
        self.requeued += sum(len(batch) for batch in batches)
        return batches

    def lost_in_transit(self) -> list[MessageBatch]:
        """Open messages that no sender holds and nothing will bring back (called
        on a stall: the queue is empty, no retry is waiting): a sender killed
        between taking a batch off the queue and saying so (Claimed) took them
        with it. As batches to queue again: the runner's own batches as they
        were, the rest as first attempts. The runner's batches keep their old
        keys too: one may be on the queue after all (behind a sender stopped
        holding the queue's lock), and a sender that takes it claims it by
        that key."""
        state = self.ledger.state
        batches: list[MessageBatch] = []
        seen: set[int] = set()
        for key in list(self.reissued):
            batch = self.reissued[key]
            seen.update(batch.ids)
            batches.append(batch.part([o for o, i in enumerate(batch.ids) if state[i] == OPEN], self._new_key()))
        for key in range(self.source.batch_count):
            ids = self.source.ids(key)
            if state[ids.start : ids.stop].count(OPEN):
                offsets = [o for o, i in enumerate(ids) if state[i] == OPEN and i not in seen]
                batches.append(self.source.batch(key).part(offsets, self._new_key()))
        lost = [self._issued(batch) for batch in batches if len(batch)]
        self.requeued += sum(len(batch) for batch in lost)
        return lost

    def _part(self, key: int, offsets: list[int], done: bool = True) -> MessageBatch | None:
        """Messages of batch `key` at `offsets`, as a new batch; `done`: no sender
        holds any of batch `key` any more."""
        if not offsets:
            return None
        batch = self.source.batch(key) if key >= 0 else self.reissued.pop(key) if done else self.reissued[key]
        return self._issued(batch.part(offsets, self._new_key()))

    def retry_batch(self, due: list[Retry]) -> MessageBatch:
        """Retries due back, as a batch the runner puts on the queue."""
        batch = MessageBatch.of(
            self._new_key(),
            tuple(retry.message_id for retry in due),
            [retry.phone for retry in due],
            self.source.text,
            tuple(retry.attempt for retry in due),
            tuple(retry.back_at for retry in due),
        )
        return self._issued(batch)

    def _new_key(self) -> int:
        key, self.next_key = self.next_key, self.next_key - 1
        return key

    def _issued(self, batch: MessageBatch) -> MessageBatch:
        if self.tracks_claims:  # a sender will claim it by its key
            self.reissued[batch.key] = batch
        return batch

    # ---- the timeline's states ----

    def sample(self, sim_now: float) -> None:
        """Backlog and sends in flight, once per timeline bin (held by a sender
        counts as in flight: it is sending it or about to); a bin with no
        sample keeps the one before."""
        timeline = self.record.timeline
        this_bin = int(sim_now / timeline.width)
        if this_bin == self.sampled_bin:
            return
        in_flight = [self.ledger.held(index) for index in range(len(timeline.names))]
        timeline.sample(sim_now, self.ledger.unsent - sum(in_flight), in_flight)
        self.sampled_bin = this_bin

    # ---- what the monitor sees ----

    def _live_state(self, index: int, state: str, now: float) -> str:
        if state != "running" or index >= len(self.specs):
            return state
        key = index if index < len(self.settings.senders) else self.names[index]
        outages = self.outages.of(key, self.specs[index])
        up_at = outages.up_from(now) if outages is not None else now
        if up_at > now:
            return f"down until {up_at:,.1f}s"
        paused = self.paused_until.get(index, 0.0)
        return f"paused (throttled) until {paused:,.1f}s" if paused > now else state

    def _outages(self, index: int, until: float) -> tuple[tuple[float, float], ...]:
        """Sender `index`'s outages by `until` (the model's, from the seed)."""
        key = index if index < len(self.settings.senders) else self.names[index]  # one from elsewhere: by name
        return self.outages.until(key, until, self.specs[index])

    def _timeline(self, views: tuple[SenderView, ...], sim_elapsed: float) -> TimelineTable:
        timeline = self.record.timeline
        timeline.outages = [list(view.outages) for view in views]
        return timeline.as_dict(sim_elapsed)

    def _receipt_figures(self, sim_elapsed: float) -> ReceiptFigures | None:
        """At the end: a run that sent or failed every message has every receipt
        at its time; one stopped short, those due by its last outcome."""
        if self.receipts is None:
            return None
        return self.receipts.figures(sim_elapsed if self.ledger.unsent else None)

    def snapshot(
        self, states: Sequence[str], elapsed: float, sim_now: float | None, retries_pending: int, retries_back_at: float
    ) -> Snapshot:
        """`sim_now`: simulated time so far, or None once the run is over."""
        total = Stats()
        for stats in self.stats:
            total.merge(stats)
        over = sim_now is None
        sim_elapsed = max(total.last_end, 0.0) if sim_now is None else sim_now  # over: the time of the last outcome
        if sim_now is not None:  # live: a running sender in one of its outages is shown down
            states = [self._live_state(i, state, sim_now) for i, state in enumerate(states)]
        views = tuple(
            SenderView(
                self.names[i],
                self.specs[i],
                self.stats[i],
                states[i],
                self.record.capped[i],
                self._outages(i, sim_elapsed),
            )
            for i in range(len(self.names))
        )
        ledger, record = self.ledger, self.record
        receipts = self._receipt_figures(sim_elapsed) if over else None  # (first: it feeds the timeline's delivered)
        return Snapshot(
            messages=ledger.messages, sent=ledger.sent, failed=ledger.failed, expired=ledger.expired,
            retried=ledger.retried,
            elapsed=elapsed, speed=self.settings.speed, stats=total, senders=views, requeued=self.requeued,
            lost_senders=self.lost_senders, redelivered=self.redelivered, duplicates=ledger.duplicates,
            sim_elapsed=sim_elapsed, reach=record.sent_times.reach(ledger.messages), lag=record.lag,
            sent_by_deadline=record.sent_by_deadline, deadline=self.settings.deadline,
            deadline_share=self.settings.deadline_share,
            timeline=self._timeline(views, sim_elapsed) if over else None,
            receipts=receipts,
            retries_pending=retries_pending, retries_back_at=retries_back_at,
        )  # fmt: skip
