"""The fast path of virtual time: the event loop's run, a chunk at a time.

Every message is in the queue at time 0, and first attempts are ahead of
every retry, so while the queue holds work every slot works back to back: a
slot of an uncapped sender starts its next attempt the moment its last one
ends, and draws it from its own lane (core/sender_model.py), so its ends are
a cumulative sum of its own draws (np.cumsum adds one after another, as the
loop does: end = start + seconds). A capped sender, or the senders of one
account, are a group of their own (virtual/capped.py): their starts at the
cap's ticks while a slot is free, their free slots in the order they went
free, one sort for a stretch of ticks. Both read their lanes' rows through
virtual/lanes.py.

A chunk is a span of simulated time [T0, T1): every lane's starts and ends in
it are computed, then the counts, the statistics (the lanes' blocks folded as
the loop folds them), the retries made (their jitters in the loop's order of
finishes: time, then slot), the reach times, the deadline count and the
timeline's bins (closed where the loop closes them: at the first finish past
a bin's edge, with what the loop would count then). While first attempts
last, every start takes one; the chunk that would take the last of them
ends at the start that does. Then the queue's retries are drained the same
way, each start (in the loop's order: time, then the START's key) taking the
head of the queue, for as long as every retry taken is back by its start
and no retry made in the chunk could come back ahead of one taken in it (a
retry comes back at least backoff / 2 after its failure); where that cannot
be promised, the state of the run (every event before T0 handled, none at
or after it) is handed to the event loop (engine._Simulation), which runs
the rest: the tail, where the queue may run dry. The loop is the definition;
this module is held to it by tests/test_fast.py, bit for bit.

Receipts are drawn a chunk at a time, each sender's in its order of
acceptance, and counted by ReceiptCount's array methods. A gateway run's
moments (an outage starting, the end of --validity, a backup's gate opening)
are the loop's: a chunk ends at the first of them, the loop handles it, and
the fast path takes the run back (resumable, _take_over) as soon as the state
is one it keeps: first attempts left, none thrown back to the front of the
queue, no backup at work.

      fast path                              event loop (engine._Simulation)
    t=0 --chunks--> a moment --hand over--> the OUTAGE or EXPIRE, the queue's front
        --chunks--> <--take back (resumable)--
        --chunks--> the last first attempt, retries drained --hand over--> the tail

The choice is the model's: SenderModel.vectorisable (sender_model.fast_path
for the run), false for anything not written here (a gateway's cap= and its
throttled answers, outages or a backup on a sender no cap paces or that shares
an account, an account whose senders' own caps bind, --trace, senders that
never wait, and any field added later), and then the loop runs alone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from heapq import heapify
from typing import Any, Protocol

import numpy as np

from smsbatch.core.receipts import ReceiptCount
from smsbatch.core.sender_model import ReceiptDraws, SenderModel
from smsbatch.core.stats import Stats, buckets_of
from smsbatch.core.timeline import MAX_BINS
from smsbatch.virtual.capped import Capped, Member, Step
from smsbatch.virtual.heap import keep_freed_memory
from smsbatch.virtual.lanes import Lane, consume, order_of, peek

# The starts a chunk aims at, over every lane: 2,048 a lane (a chunk's per-lane work is Python), within
# 65,536 to 131,072 in all (half a megabyte to a megabyte an array: the fewer, the more of a chunk's
# arrays stay in the cache and the fewer pages a run faults in; a few lanes' chunks, capped senders'
# above all, go 6 to 12% faster at the least), and never under 512 a lane (30% less for 300 lanes).
LANE_STARTS = 2048
CHUNK_LEAST, CHUNK_MOST = 1 << 16, 1 << 17
LANE_LEAST = 512


def chunk_starts(lanes: int) -> int:
    """The starts a chunk of `lanes` lanes aims at (LANE_STARTS a lane, CHUNK_LEAST to CHUNK_MOST, LANE_LEAST)."""
    return max(min(max(CHUNK_LEAST, LANE_STARTS * lanes), CHUNK_MOST), LANE_LEAST * lanes)


class _Slot:
    """A slot of an uncapped sender: its own lane, back to back."""

    __slots__ = ("began", "cur", "cv", "g", "lane", "mean", "rows", "s", "slot", "start", "taking")

    def __init__(self, s: int, slot: int, g: int, lane: Lane, mean: float, cv: float) -> None:
        self.s, self.slot, self.g, self.lane, self.mean, self.cv = s, slot, g, lane, mean, cv
        self.start = 0.0  # its next start: the end of the attempt in flight
        self.cur: tuple[float, bool, int] | None = None  # the attempt in flight: (seconds, failed, attempt)
        self.began = 0.0  # ... and when it started
        # This chunk's rows from the next start on: (starts, ends, seconds, failed)
        self.rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.taking = 0  # ... of which this many start before the chunk's end

    def look(self, used: int, t1: float) -> None:
        """Its rows from its next start until one starts at or after t1 (as many
        as that takes, five standard deviations over: looked at twice as far
        again if they do not reach)."""
        expected = (t1 - self.start) / self.mean
        count = int(expected + 5.0 * self.cv * math.sqrt(expected)) + 16
        while True:
            seconds, failed = peek(self.lane, used, count)
            buf = np.empty(count + 1)
            buf[0] = self.start
            buf[1:] = seconds
            np.cumsum(buf, out=buf)  # one addition after another: end = start + seconds, as the loop adds
            if buf[-1] >= t1:
                self.rows = (buf[:-1], buf[1:], seconds, failed)
                self.taking = int(np.searchsorted(self.rows[0], t1))
                return
            count *= 2


class _Run(Protocol):
    """What the fast path reads and writes of the loop's run (engine._Simulation)."""

    events: list[Any]
    fresh: int
    waiting: deque[int]
    pending: int
    seq: int
    times: list[list[float]]
    fails: list[list[bool]]
    used: list[int]
    lane_of: list[int]
    sender_of: list[int]
    first_slot: list[int]
    now: float
    sent: int
    failed: int
    retried: int
    finished: list[int]
    failed_attempts: list[int]
    first_end: list[float]
    last_end: list[float]
    deadline: float
    by_deadline: int
    messages: int
    next_reach: int
    bins: Any
    gate: Any

    @property
    def lanes(self) -> Sequence[Lane]: ...

    def begin(self) -> None: ...

    def started(self, s: int) -> int: ...

    def _reached(self, sent: int, t: float) -> None: ...


def advance(
    run: _Run,
    models: Sequence[SenderModel],
    kinds: tuple[int, int, int],
    tick: Callable[[Any], bool] | None = None,
    progress: Any = None,  # engine.Progress
    resume: bool = False,
) -> bool:
    """Run `run` from time 0 (or, `resume`, from where the loop left it: see
    resumable) while first attempts last and no moment comes (an event of
    another kind: an outage, the end of --validity), and leave it where the
    event loop takes over (or call its begin(), when there is nothing to
    vectorise). `kinds`: the loop's FINISH, ARRIVE, START. False: `tick` stopped it."""
    if not resume and run.fresh <= len(run.sender_of):  # a handful of messages: the loop alone
        run.begin()
        return True
    keep_freed_memory()  # (a chunk's arrays reused, not faulted in again: virtual/heap.py)
    fast = _Fast(run, models, kinds, resume)
    if progress is None:
        return fast.go(tick, None)
    started: Callable[[], list[Stats]] = progress.stats_now  # every attempt started (the run has no events yet)

    def finished() -> list[Stats]:
        stats = started()
        for slot in fast.slots:
            if slot.cur is not None:
                stats[slot.s].forget(slot.cur[0], not slot.cur[1])
        for c in fast.capped:
            for _, busy_slot, seconds, failed, _, _ in c.inflight:
                stats[run.sender_of[busy_slot]].forget(seconds, not failed)
        return stats

    progress.stats_now = finished
    try:
        return fast.go(tick, progress)
    finally:
        progress.stats_now = started


def resumable(run: _Run, models: Sequence[SenderModel], kinds: tuple[int, int, int]) -> bool:
    """Can the fast path take a gateway run over from the loop where it is (every
    event before the next one's time handled)? While first attempts are left
    and none was thrown back to the front of the queue, every uncapped slot is
    busy or about to start, no backup is at work, and no moment is due first."""
    events = run.events
    if not events or run.fresh <= len(run.sender_of) or getattr(run, "front", None):
        return False
    t, kind = events[0][0], events[0][1]
    if kind not in kinds:
        return False
    finish, _, start = kinds
    sending = {e[2] for e in events if e[1] == finish}
    busy = sending | {e[2] for e in events if e[1] == start}
    moment = min((e[0] for e in events if e[1] not in kinds), default=math.inf)
    if moment <= t:
        return False
    backup_starts = {e[2]: e[0] for e in events if e[1] == start}
    for s, model in enumerate(models):
        slots = range(run.first_slot[s], run.first_slot[s] + model.window)
        if model.backup and any(slot in sending for slot in slots):
            return False
        first = run.first_slot[s]
        if model.backup and first in backup_starts and run.gate.pacers[s].opens_at(backup_starts[first]) <= t:
            return False  # (it is about to start: the loop's)
        if not model.capped and not all(slot in busy for slot in slots):
            return False
    return True


class _Fast:
    def __init__(
        self, run: _Run, models: Sequence[SenderModel], kinds: tuple[int, int, int], resume: bool = False
    ) -> None:
        self.run, self.models, self.kinds = run, models, kinds
        self.slots: list[_Slot] = []
        self.capped: list[Capped] = []
        rate = 0.0
        groups: dict[str | int, list[Member]] = {}  # capped senders: an account's together, else each alone
        for s, model in enumerate(models):
            first = run.first_slot[s]
            if model.capped:
                g = run.lane_of[first]
                member = Member(s, first, model.window, g, run.lanes[g], model.start_gap)
                groups.setdefault(model.spec.account or s, []).append(member)
            else:
                for slot in range(first, first + model.window):
                    g = run.lane_of[slot]
                    self.slots.append(_Slot(s, slot, g, run.lanes[g], model.mean_send, model.send_cv))
                rate += model.window / model.mean_send
        for members in groups.values():
            gap = max(max(models[m.s].start_gap, models[m.s].account_gap) for m in members)
            self.capped.append(Capped(members, gap))
            work = sum(m.window / models[m.s].mean_send for m in members)
            rate += min(1.0 / gap, work)
        self.capped.sort(key=lambda c: c.first_slot)
        self.sender_of = np.array(run.sender_of, dtype=np.int64)
        lanes = len(self.slots) + len(self.capped)
        self.span = chunk_starts(lanes) / rate
        self.senders = len(models)
        self.max_retries = np.array([model.max_retries for model in models])
        self.by_finishes = np.array([not model.capped for model in models])  # senders of slots (see _close_bins)
        same = len(set(self.max_retries.tolist())) == 1
        self.max_retries_all: int | None = int(self.max_retries[0]) if same else None  # (one for all: no lookup)
        self.backoff = min(model.retry_backoff for model in models)
        self.started = [0] * self.senders  # attempts started, per sender
        # Retries on their way back to the queue: when they arrive, in what order they were made, their attempt.
        self.pending = np.empty(0)
        self.pending_seq = np.empty(0, dtype=np.int64)
        self.pending_attempt = np.empty(0, dtype=np.int64)
        # The queue's retries (behind every first attempt), arrived, in order: their attempts from `taken` on.
        self.waiting = np.empty(0, dtype=np.int64)
        self.taken = 0
        self.open: list[np.ndarray] = []  # send times of the attempts ended in the open bin
        self.open_buckets: list[np.ndarray] = []  # ... and their buckets
        self.t0 = 0.0
        self.drain_span = self.span / 4  # the chunk _drain tries first
        self.steps: list[Step] = []
        # Receipts modelled (engine._ReceiptSimulation): the run's count, and each sender's draws.
        self.receipts: ReceiptCount | None = getattr(run, "receipt_count", None)
        self.receipt_draws: list[ReceiptDraws] = getattr(run, "receipt_draws", [])
        # A gateway run's: when each slot's attempt in flight started, and its attempt (its outages read them).
        self.slot_start: list[float] | None = getattr(run, "slot_start", None)
        self.slot_attempt: list[int] | None = getattr(run, "slot_attempt", None)
        self.backups = [c for c in self.capped if any(models[m.s].backup for m in c.members)]
        self.resumed = resume
        if resume:
            self._take_over()
        else:  # a gated sender's first start waits for its gate (down at 0, a backup until the others are down)
            for c in self.capped:
                c.due = min(run.gate.pacers[m.s].opens_at(0.0) for m in c.members)
        # The first moment (an outage, the end of --validity) or backup start: the loop's, from there on.
        self.limit = min((e[0] for e in run.events if e[1] not in kinds), default=math.inf)
        for c in self.backups:
            if c.due is not None:
                self.limit = min(self.limit, c.due)

    def go(self, tick: Callable[[Any], bool] | None, progress: Any) -> bool:
        """First attempts a chunk at a time, then the queue's retries while it
        cannot run dry or change order within a chunk; the loop for the rest."""
        run = self.run
        draining = False
        rate = 0.0  # starts a simulated second, as the last chunk had them
        while self.t0 < self.limit:
            if not draining:
                t1 = min(self.t0 + self.span, self.limit)
                if rate:  # end short of the start that takes the last first attempt: the chunk that does is redone
                    t1 = min(t1, self.t0 + max(0.9 * run.fresh / rate, self.span / 64))
                saved = [c.state() for c in self.capped]
                fresh = run.fresh
                starts, last = self._look(t1)
                if last:  # the last first attempts start in this chunk: end it at the one that takes the last
                    every = np.concatenate(starts) if starts else np.empty(0)
                    t1 = float(np.partition(every, run.fresh - 1)[run.fresh - 1])
                    for c, state in zip(self.capped, saved, strict=True):
                        c.restore(state)
                    self._look(t1)
                self._commit(t1, None)
                rate = (fresh - run.fresh) / (t1 - self.t0) if t1 > self.t0 else 0.0
                self.t0 = t1
                draining = last
            elif not self._drain():
                break
            if progress is not None:
                progress.now, progress.sent, progress.failed = run.now, run.sent, run.failed
                progress.retried = run.retried
                if tick is not None and not tick(progress):
                    self._hand_over()
                    return False
        self._hand_over()
        return True

    def _drain(self) -> bool:
        """One chunk of the queue's retries, if it can be computed exactly: every
        start takes the retry at the head of the queue (arrived by then), and no
        retry made in the chunk could come back before one taken in it (a
        retry comes back at least backoff / 2 after it failed). False: the loop's turn."""
        span = self.drain_span  # the last chunk's that could, twice (a chunk that cannot is work thrown away)
        while span >= self.span / 4096:
            t1 = min(self.t0 + span, self.limit)
            saved = [c.state() for c in self.capped]
            self._look(t1)
            attempts = self._queue(t1)
            if attempts is not None:
                self._commit(t1, attempts)
                self.t0 = t1
                self.drain_span = min(self.span / 4, 2 * span)
                return True
            for c, state in zip(self.capped, saved, strict=True):
                c.restore(state)
            span /= 4
        return False

    # ---- a chunk ----

    def _look(self, t1: float) -> tuple[list[np.ndarray], bool]:
        """Every lane's starts in [t0, t1), as if the queue never ran dry:
        (the start times, do they take the last of the first attempts?)."""
        run = self.run
        starts: list[np.ndarray] = []
        count = 0
        for slot in self.slots:
            if slot.start < t1:
                slot.look(run.used[slot.g], t1)
                assert slot.rows is not None
                mine = slot.rows[0][: slot.taking]
                starts.append(mine)
                count += len(mine)
            else:
                slot.rows = None
        self.steps = []
        for c in self.capped:
            step = c.step(t1, [run.used[m.g] for m in c.members])
            self.steps.append(step)
            starts += step.starts
            count += sum(step.drawn)
        return starts, count >= run.fresh

    def _queue(self, t1: float) -> list[np.ndarray] | None:
        """The attempt numbers the chunk's starts take from the queue, lane by
        lane (the slots', then the capped senders'), in the loop's order of
        starts (time, then the START's key: a slot, a capped sender's first
        slot); None if the chunk cannot be computed so."""
        times: list[np.ndarray] = []
        keys: list[np.ndarray] = []
        failed_at = math.inf  # the first failure in the chunk
        for slot in self.slots:
            if slot.rows is None:
                continue
            st, en, _, failed = slot.rows
            m = slot.taking
            times.append(st[:m])
            keys.append(np.full(m, slot.slot))
            if m and slot.cur is not None and slot.cur[1]:
                failed_at = min(failed_at, float(st[0]))
            hit = np.flatnonzero(failed[: m - 1])
            if len(hit):
                failed_at = min(failed_at, float(en[int(hit[0])]))
        for c, step in zip(self.capped, self.steps, strict=True):
            drawn = sum(step.drawn)
            times.append(np.concatenate(step.starts) if drawn else np.empty(0))
            first_slots = np.array([m.first_slot for m in c.members], dtype=np.int64)
            keys.append(first_slots[np.concatenate(step.owners)] if drawn else np.empty(0, dtype=np.int64))
            for done in step.finishes:
                hit = done[0, done[2] != 0.0]
                if len(hit):
                    failed_at = min(failed_at, float(hit.min()))
        if not times:  # nothing starts in the chunk (nor ends)
            return []
        at, key = np.concatenate(times), np.concatenate(keys)
        n = len(at)
        fresh = self.run.fresh  # first attempts left at the head (those that started with the last of them)
        waiting = fresh + len(self.waiting) - self.taken
        if n > waiting + len(self.pending):
            return None
        order = order_of(at, key)
        taken = np.concatenate(
            (
                np.ones(min(n, fresh), dtype=np.int64),
                self.waiting[self.taken : self.taken + max(0, min(n, waiting) - fresh)],
            )
        )
        if n > waiting:  # retries that come back during the chunk: each must be back by its start
            by_arrival = order_of(self.pending, self.pending_seq)[: n - waiting]
            back = self.pending[by_arrival]
            if (back > at[order][waiting:]).any() or back[-1] > failed_at + self.backoff / 2:
                return None
            taken = np.concatenate((taken, self.pending_attempt[by_arrival]))
        attempts = np.empty(n, dtype=np.int64)
        attempts[order] = taken
        lanes, i = [], 0
        for part in times:
            lanes.append(attempts[i : i + len(part)])
            i += len(part)
        return lanes

    def _commit(self, t1: float, attempts: list[np.ndarray] | None) -> None:
        """Everything before t1 happens: starts, finishes, retries, counts, bins.
        `attempts`: the starts' attempt numbers, lane by lane (None: first attempts)."""
        run = self.run
        fin_t: list[np.ndarray] = []
        fin_d: list[np.ndarray] = []
        fin_f: list[np.ndarray] = []
        fin_s: list[np.ndarray] = []
        fin_slot: list[np.ndarray] = []
        fin_a: list[np.ndarray] = []
        lane_starts: list[tuple[int, np.ndarray]] = []  # (sender, its start times this chunk)
        # ... those of them at no finish of their own lane in the chunk (a slot starts as its last attempt ends,
        # but for a start with nothing in flight before it at t0; a capped sender at its cap's ticks): the bins
        # count the others by the finishes.
        unmatched: list[tuple[int, np.ndarray]] = []
        # The finishes: each slot's own rows (views of them, the sender and slot repeated after), then the
        # slots' attempts in flight at t0 that end in the chunk (`ended`, one array each; _take_rows reads
        # them in this order), then the capped senders': the finishes need no time order.
        ended: list[tuple[float, float, bool, int, int, int]] = []
        lengths: list[int] = []
        senders: list[int] = []
        slot_numbers: list[int] = []
        taking: list[tuple[_Slot, int, int]] = []  # (slot, rows it starts, its attempt's place in `ended` or -1)
        lane = 0
        for slot in self.slots:
            rows = slot.rows
            if rows is None:
                continue
            mine = attempts[lane] if attempts is not None else None
            lane += 1
            st, en, seconds, failed = rows
            m = slot.taking
            if not m:
                slot.rows = None
                continue
            s = slot.s
            taking.append((slot, m, len(ended) if slot.cur is not None else -1))
            if slot.cur is not None:  # it ends at st[0]
                ended.append((float(st[0]), slot.cur[0], slot.cur[1], slot.cur[2], s, slot.slot))
            if m > 1:  # rows 0..m-2 end in the chunk too; row m-1 is in flight
                fin_t.append(en[: m - 1])
                fin_d.append(seconds[: m - 1])
                fin_f.append(failed[: m - 1])
                if mine is not None:
                    fin_a.append(mine[: m - 1])
                lengths.append(m - 1)
                senders.append(s)
                slot_numbers.append(slot.slot)
            lane_starts.append((s, st[:m]))
            if slot.cur is None:
                unmatched.append((s, st[:1]))
            run.first_end[s] = min(run.first_end[s], float(en[0]))
            slot.cur = (float(seconds[m - 1]), bool(failed[m - 1]), int(mine[m - 1]) if mine is not None else 1)
            slot.began = float(st[m - 1])
            slot.start = float(en[m - 1])
            self.started[s] += m
            slot.rows = None
        if lengths:
            fin_s.append(np.repeat(np.array(senders, dtype=np.int64), lengths))
            fin_slot.append(np.repeat(np.array(slot_numbers, dtype=np.int64), lengths))
            if attempts is None:
                fin_a.append(np.ones(sum(lengths), dtype=np.int64))
        ended_at = sum(lengths)  # where the attempts in flight at t0 are among the finishes
        if ended:
            columns = list(zip(*ended, strict=True))
            fin_t.append(np.array(columns[0]))
            fin_d.append(np.array(columns[1]))
            fin_f.append(np.array(columns[2], dtype=bool))
            fin_a.append(np.array(columns[3], dtype=np.int64))
            fin_s.append(np.array(columns[4], dtype=np.int64))
            fin_slot.append(np.array(columns[5], dtype=np.int64))
        for c, step in zip(self.capped, self.steps, strict=True):
            drawn = sum(step.drawn)
            mine = attempts[lane] if attempts is not None else np.ones(drawn, dtype=np.int64)
            lane += 1
            first_row = c.row - drawn
            attempt_of = c.attempt_of
            if step.finishes:
                ends, seconds, failed, atts, by_sender, slots = self._group_finishes(c, step, mine, first_row)
                fin_t.append(ends)
                fin_d.append(seconds)
                fin_f.append(failed)
                fin_a.append(atts)
                fin_s.append(by_sender)
                fin_slot.append(slots)
            for _, _, _, _, row, _ in c.inflight:
                if row >= first_row:
                    attempt_of[row] = int(mine[row - first_row])
            if drawn:
                at = np.concatenate(step.starts)
                owners = np.concatenate(step.owners) if len(c.members) > 1 else None
                for i, member in enumerate(c.members):
                    if not step.drawn[i]:
                        continue
                    s = member.s
                    lane_starts.append((s, at if owners is None else at[owners == i]))
                    unmatched.append(lane_starts[-1])
                    run.first_end[s] = min(run.first_end[s], step.first_end[i])
                    run.used[member.g] = consume(member.lane, run.used[member.g], step.drawn[i])
                    self.started[s] += step.drawn[i]
        fd = np.concatenate(fin_d) if fin_d else np.empty(0)
        fin_d.clear()
        fb = buckets_of(fd)  # the finishes' buckets: for the bins, and for the slots' statistics
        self._take_rows(taking, fb, ended_at)
        count = sum(len(st) for _, st in lane_starts)
        if attempts is None:
            run.fresh -= count
        else:  # first attempts left, the waiting retries, then those that came back during the chunk
            fresh = min(count, run.fresh)
            run.fresh -= fresh
            count -= fresh
            waiting = len(self.waiting) - self.taken
            self.taken += min(count, waiting)
            if count > waiting:
                keep = order_of(self.pending, self.pending_seq)[count - waiting :]
                self.pending, self.pending_seq = self.pending[keep], self.pending_seq[keep]
                self.pending_attempt = self.pending_attempt[keep]
        started_before = list(self.started)
        for s, st in lane_starts:
            started_before[s] -= len(st)
        if len(fd):
            pieces = (fin_t, fin_f, fin_s, fin_slot, fin_a)
            ft, ff, fs, fslot, fa = (np.concatenate(parts) for parts in pieces)
            for parts in pieces:  # (their pieces go: the chunk's memory peaks in _finishes)
                parts.clear()
            self._finishes(ft, fd, fb, ff.astype(bool), fs, fslot, fa, unmatched, started_before)
        # The retries back by t1 join the queue, in the order they came back.
        back = self.pending < t1
        if back.any():
            order = order_of(self.pending[back], self.pending_seq[back])
            self.waiting = np.concatenate((self.waiting[self.taken :], self.pending_attempt[back][order]))
            self.taken = 0
            self.pending, self.pending_seq = self.pending[~back], self.pending_seq[~back]
            self.pending_attempt = self.pending_attempt[~back]

    def _group_finishes(
        self, c: Capped, step: Step, attempts: np.ndarray, first_row: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A capped group's finishes in the chunk (step.finishes, taken): their
        ends, seconds, failed?, attempts (`attempts` of the rows started in the
        chunk, from `first_row` on; those in flight before it, as kept), senders
        and slots; each member's last end noted."""
        done = step.finishes[0] if len(step.finishes) == 1 else np.concatenate(step.finishes, axis=1)
        step.finishes.clear()
        row_ids = done[4].astype(np.int64)
        new = row_ids >= first_row
        atts = np.empty(len(row_ids), dtype=np.int64)
        atts[new] = attempts[row_ids[new] - first_row]
        for i in np.flatnonzero(~new).tolist():
            atts[i] = c.attempt_of.pop(int(row_ids[i]))
        slots = done[3].astype(np.int64)
        by_sender = self.sender_of[slots]
        for member in c.members:
            ends = done[0] if len(c.members) == 1 else done[0, by_sender == member.s]
            if len(ends):
                self.run.last_end[member.s] = float(ends.max())
        return done[0], done[1], done[2].astype(bool), atts, by_sender, slots

    def _take_rows(self, taking: list[tuple[_Slot, int, int]], fb: np.ndarray, ended_at: int) -> None:
        """The slots' rows started in the chunk taken from their lanes, each lane
        given the buckets of its rows that ended in it (fb: the finishes', the
        slots' own first, then those in flight at t0 from `ended_at` on), in
        row order: the block they fold into need not bucket them again."""
        run = self.run
        part = 0
        for slot, m, in_flight in taking:
            lane, used = slot.lane, run.used[slot.g]
            if in_flight >= 0:  # the attempt in flight at t0: the row before the first taken now
                lane.known_buckets(used - 1, fb[ended_at + in_flight : ended_at + in_flight + 1])
            if m > 1:
                lane.known_buckets(used, fb[part : part + m - 1])
                part += m - 1
            run.used[slot.g] = consume(lane, used, m)

    def _finishes(
        self,
        ft: np.ndarray,
        fd: np.ndarray,
        fb: np.ndarray,
        ff: np.ndarray,
        fs: np.ndarray,
        fslot: np.ndarray,
        fa: np.ndarray,
        unmatched: list[tuple[int, np.ndarray]],
        started_before: list[int],
    ) -> None:
        """The chunk's finishes (in the lanes' order, not in time): retries,
        counts, reach times, bins. Only the bins' closes need the time order,
        and only the finishes' times of it: a finish's close is found by its
        time (every finish at a close's time is at or after the closing one in
        the loop too: the first of them closes), so the counts at each close
        come from one count over (close, sender, outcome); and the closes
        themselves need no sort where the edges stay on one grid (closes_on_grid)."""
        run = self.run
        retry = ff & (fa <= (self.max_retries[fs] if self.max_retries_all is None else self.max_retries_all))
        ok = ~ff
        if retry.any():
            self._retries(ft[retry], fs[retry], fslot[retry], fa[retry])
        code = fs * 3  # sender, then: 0 sent, 1 to retry, 2 failed for good
        code += ff
        code += ff
        code -= retry
        before = (run.now, run.sent, run.failed, run.retried, list(run.finished), list(run.failed_attempts))
        width = 3 * self.senders
        if run.bins.timeline is not None:
            counts = self._close_bins(ft, fd, fb, code, unmatched, started_before, before)
        else:
            counts = np.bincount(code, minlength=width).reshape(1, self.senders, 3)
        total = counts.sum(axis=0)  # per sender: sent, to retry, failed for good
        sent = int(total[:, 0].sum())
        sent_before = run.sent
        accepted: np.ndarray | None = None  # the accepted finishes' times
        while run.next_reach != -1 and sent_before + sent >= run.next_reach:
            if accepted is None:
                accepted = ft[ok]
            rank = run.next_reach - sent_before - 1  # (the reach's time: that rank of them, found without a sort)
            run._reached(run.next_reach, float(np.partition(accepted, rank)[rank]))
        run.sent += sent
        run.failed += int(total[:, 2].sum())
        run.retried += int(total[:, 1].sum())
        last_finish = float(ft.max())
        if run.deadline >= last_finish:
            run.by_deadline += sent
        elif run.deadline >= ft.min():
            run.by_deadline += int(np.count_nonzero(ok & (ft <= run.deadline)))
        for s, (sent_s, retried_s, failed_s) in enumerate(total.tolist()):
            run.finished[s] += sent_s + retried_s + failed_s
            run.failed_attempts[s] += retried_s + failed_s
        run.now = last_finish
        if self.receipts is not None:
            self._receipts(ft[ok], fs[ok], fslot[ok])

    def _receipts(self, ft: np.ndarray, fs: np.ndarray, fslot: np.ndarray) -> None:
        """The receipts of the messages accepted in the chunk (at ft, by sender fs,
        slot fslot): each sender's drawn in its order of acceptance (time, then
        slot: the loop's order of finishes), then those due by the chunk's last
        finish counted. The loop counts each at the first finish at or after it,
        into the timeline, after that finish has closed its bin: a delivery
        counted is never later than the last finish, so the width doubles where
        _close_bins doubles it, and counts add up alike in any order."""
        receipts = self.receipts
        assert receipts is not None
        if len(ft):
            order = order_of(ft, fslot)
            ft, fs = ft[order], fs[order]
            times: list[np.ndarray] = []
            kinds: list[np.ndarray] = []
            for s in np.flatnonzero(np.bincount(fs)).tolist():
                due, kind = self.receipt_draws[s].take_many(ft[fs == s])
                times.append(due)
                kinds.append(kind)
            receipts.add_many(np.concatenate(times), np.concatenate(kinds))
        receipts.advance_many(self.run.now)

    def _retries(self, ft: np.ndarray, fs: np.ndarray, fslot: np.ndarray, fa: np.ndarray) -> None:
        """Failed attempts with retries left, in the loop's order (time, then
        slot): each sender's jitters in that order, and their arrivals."""
        order = order_of(ft, fslot)
        ft, fs, fa = ft[order], fs[order], fa[order]
        delays = np.empty(len(ft))
        for s in np.flatnonzero(np.bincount(fs)).tolist():  # the senders among them
            mine = fs == s
            delays[mine] = self.models[s].retry_delays(fa[mine])
        run = self.run
        self.pending = np.concatenate((self.pending, ft + delays))
        self.pending_seq = np.concatenate((self.pending_seq, run.seq + 1 + np.arange(len(ft))))
        self.pending_attempt = np.concatenate((self.pending_attempt, fa + 1))
        run.seq += len(ft)

    def _close_bins(
        self,
        ft: np.ndarray,
        fd: np.ndarray,
        fb: np.ndarray,
        code: np.ndarray,
        unmatched: list[tuple[int, np.ndarray]],
        started_before: list[int],
        before: tuple[float, int, int, int, list[int], list[int]],
    ) -> np.ndarray:
        """The timeline's bins that close in this chunk, as _Bins.close closes
        them: at the first finish at or past the open bin's edge, with the
        counts of everything before that finish. The counts (close, sender,
        outcome: see _finishes), the open bin's last."""
        run = self.run
        bins = run.bins
        timeline = bins.timeline
        now_before, sent_before, failed_before, retried_before, finished_before, fa_before = before
        closing = closes_on_grid(ft, timeline.width, bins.edge, now_before)
        if closing is None:  # the width doubles in the chunk, or an edge rounds: the loop's way, in time order
            closing = closes_in_order(ft, timeline.width, bins.edge, now_before)
        times, nows, interval = closing
        closes = len(nows)
        senders = self.senders
        keyed = interval * (3 * senders)
        keyed += code
        counts = np.bincount(keyed, minlength=(closes + 1) * 3 * senders)
        counts = counts.reshape(closes + 1, senders, 3)
        last = interval == closes  # the finishes in the bin left open
        if not closes:
            self.open.append(fd)
            self.open_buckets.append(fb)
            return counts
        upto = np.cumsum(counts[:-1], axis=0)  # at each close, every finish before it
        # The chunk's starts before each close: a slot's at the finishes before it (each start but its
        # first is at the end of the attempt before), and those not at a finish (`unmatched`) by time.
        ended = upto.sum(axis=2).T
        started = np.where(self.by_finishes[:, None], ended, 0)
        for s, st in unmatched:
            started[s] += np.searchsorted(st, times)
        finished = ended + np.array(finished_before)[:, None]
        failed_attempts = (upto[:, :, 1] + upto[:, :, 2]).T + np.array(fa_before)[:, None]
        in_flight = np.array(started_before)[:, None] + started - finished
        sent = sent_before + upto[:, :, 0].sum(axis=1)
        failed = failed_before + upto[:, :, 2].sum(axis=1)
        retried = retried_before + upto[:, :, 1].sum(axis=1)
        backlog = run.messages - sent - failed - in_flight.sum(axis=0)
        # Each bin's histogram of send times: one count over (bin, bucket) for the chunk.
        opened = np.concatenate(self.open_buckets) if self.open_buckets else fb[:0]  # (counted into the first)
        self.open, self.open_buckets = [fd[last]], [fb[last]]
        present = [part for part in (fb, opened) if len(part)]
        low = min((int(part.min()) for part in present), default=0)
        width = max((int(part.max()) for part in present), default=0) - low + 1  # the buckets in use
        keyed = interval * width
        keyed += fb
        keyed -= low
        found_counts = np.bincount(keyed, minlength=(closes + 1) * width)
        if len(opened):
            found_counts[:width] += np.bincount(opened - low, minlength=width)
        found_counts = found_counts.reshape(closes + 1, width)[:-1]
        # Each bin's counts: what they came to at its close, less what they were at the close before.
        added = [
            np.diff(series, axis=-1, prepend=np.asarray(before)[..., None]).T.tolist()
            for series, before in (
                (sent, bins.sent),
                (failed, bins.failed),
                (retried, bins.retried),
                (finished, bins.finished),
                (failed_attempts, bins.failed_attempts),
            )
        ]
        in_flight_l, backlog_l = in_flight.T.tolist(), backlog.tolist()
        where, keys = np.nonzero(found_counts)  # row by row, keys ascending (as np.unique gives them)
        found = found_counts[where, keys].tolist()
        cuts = np.searchsorted(where, np.arange(closes + 1)).tolist()
        keys_l = (keys + low).tolist()
        for i, now in enumerate(nows):
            lo, hi = cuts[i], cuts[i + 1]
            histogram = dict(zip(keys_l[lo:hi], found[lo:hi], strict=True))
            timeline.add_bin(now, *(series[i] for series in added), histogram)
            timeline.sample(now, backlog_l[i], in_flight_l[i])
        bins.sent, bins.failed, bins.retried = int(sent[-1]), int(failed[-1]), int(retried[-1])
        bins.finished, bins.failed_attempts = finished[:, -1].tolist(), failed_attempts[:, -1].tolist()
        bins.edge = (math.floor(float(times[-1]) / timeline.width) + 1) * timeline.width
        return counts

    # ---- the loop takes over, and back ----

    def _take_over(self) -> None:
        """The run where the loop left it (see resumable), as the fast path keeps
        it: the slots' attempts in flight and starts due, the gates', the retries
        on their way back and in the queue, the open bin. The moments stay in the
        loop's heap; t0 is the next event's time."""
        run = self.run
        finish, arrive, start = self.kinds
        assert self.slot_start is not None
        assert self.slot_attempt is not None
        slot_start, slot_attempt = self.slot_start, self.slot_attempt
        ends: dict[int, tuple[float, int, float]] = {}  # slot -> its FINISH: (time, attempt or 0, seconds)
        starts: dict[int, float] = {}  # key -> its START's time
        arrivals: list[tuple[float, int, int]] = []
        moments = []
        for event in run.events:
            t, kind, key, attempt, seconds = event
            if kind == finish:
                ends[key] = (t, attempt, seconds)
            elif kind == start:
                starts[key] = t
            elif kind == arrive:
                arrivals.append((t, key, attempt))
            else:
                moments.append(event)
        self.t0 = run.events[0][0]
        run.events[:] = moments
        heapify(run.events)
        for slot in self.slots:
            if slot.slot in ends:
                end, attempt, seconds = ends[slot.slot]
                slot.cur, slot.start = (seconds, attempt != 0, slot_attempt[slot.slot]), end
                slot.began = slot_start[slot.slot]
            else:
                slot.cur, slot.start = None, starts[slot.slot]
        gate = run.gate
        for c in self.capped:
            c.held = [entry for m in c.members for entry in gate.held[m.s]]
            heapify(c.held)
            c.inflight, c.attempt_of = [], {}
            for j, busy_slot in enumerate(c.index_of):
                if busy_slot in ends:
                    end, attempt, seconds = ends[busy_slot]
                    c.inflight.append((end, busy_slot, seconds, attempt != 0, -1 - j, slot_start[busy_slot]))
                    c.attempt_of[-1 - j] = slot_attempt[busy_slot]
            heapify(c.inflight)
            # A START opens when its caps and gate let it (else the loop pushes it there): an outage's end.
            due = [gate.pacers[m.s].opens_at(starts[m.first_slot]) for m in c.members if gate.start_due[m.s]]
            c.due = min(due) if due else None
            c.next_start = max(gate.pacers[m.s].next_start for m in c.members)
            c.capped = [gate.capped_time[m.s] for m in c.members]
            c.row, c.last_start = 0, [None] * len(c.members)
        arrivals.sort()
        self.pending = np.array([t for t, _, _ in arrivals])
        self.pending_seq = np.array([seq for _, seq, _ in arrivals], dtype=np.int64)
        self.pending_attempt = np.array([attempt for _, _, attempt in arrivals], dtype=np.int64)
        run.pending = 0
        self.waiting = np.array(run.waiting, dtype=np.int64)
        run.waiting.clear()
        rounds = getattr(run, "rounds", [0] * self.senders)
        self.started = [run.started(s) - rounds[s] for s in range(self.senders)]
        if run.bins.ended:
            self.open = [np.array(run.bins.ended)]
            self.open_buckets = [buckets_of(self.open[0])]
            run.bins.ended.clear()
        if self.receipts is not None:
            self.receipts.take_heap()

    def _hand_over(self) -> None:
        """The run at t0, every event before it handled, as the loop keeps it."""
        run = self.run
        if self.t0 == 0.0 and not self.resumed:  # nothing happened yet
            run.begin()
            return
        finish, arrive, start = self.kinds
        events = run.events
        for slot in self.slots:
            assert slot.cur is not None
            seconds, failed, attempt = slot.cur
            events.append((slot.start, finish, slot.slot, attempt if failed else 0, seconds))
        gate = run.gate
        for c in self.capped:
            for end, slot_, seconds, failed, row, _ in c.inflight:
                events.append((end, finish, slot_, c.attempt_of[row] if failed else 0, seconds))
            shared = None  # the account's Pacer: next start its gap after the group's last start
            for i, m in enumerate(c.members):
                held = [entry for entry in c.held if run.sender_of[entry[1]] == m.s]
                heapify(held)
                gate.held[m.s][:] = held
                gate.start_due[m.s] = c.due is not None and bool(held)
                if gate.start_due[m.s]:
                    events.append((c.due, start, m.first_slot, 0, 0.0))
                caps = gate.pacers[m.s]
                last = c.last_start[i]
                if last is not None and m.own_gap:
                    caps.own.next_start = last + m.own_gap
                shared = caps.account
                gate.capped_time[m.s] = c.capped[i]
            starts = [last for last in c.last_start if last is not None]
            if shared is not None and starts:
                shared.next_start = max(starts) + shared.gap
        if self.slot_start is not None and self.slot_attempt is not None:  # (a gateway run)
            for slot in self.slots:
                assert slot.cur is not None
                self.slot_start[slot.slot], self.slot_attempt[slot.slot] = slot.began, slot.cur[2]
            for c in self.capped:
                for _, busy_slot, _, _, row, began in c.inflight:
                    self.slot_start[busy_slot], self.slot_attempt[busy_slot] = began, c.attempt_of[row]
        for at, seq, attempt in zip(
            self.pending.tolist(), self.pending_seq.tolist(), self.pending_attempt.tolist(), strict=True
        ):
            events.append((at, arrive, seq, attempt, 0.0))
        heapify(events)
        run.pending = len(self.pending)
        run.waiting.extend(self.waiting[self.taken :].tolist())
        for g, lane in enumerate(run.lanes):
            run.times[g], run.fails[g] = lane.lists_at(run.used[g])
        if self.open:
            run.bins.ended.extend(np.concatenate(self.open).tolist())
        self.open, self.open_buckets = [], []
        if self.receipts is not None:
            self.receipts.hold_all()


Closes = tuple[np.ndarray, list[float], np.ndarray]  # the closes' times, each one's last finish before, intervals


def closes_in_order(ft: np.ndarray, width: float, edge: float, now_before: float) -> Closes:
    """Where the timeline's bins close among the finishes at `ft` (any order),
    as _Bins.close closes them: at the first finish at or past the open bin's
    `edge`, the width doubling as the timeline's bin_of doubles it, the next
    edge the one past the closing finish. (The closes, the last finish before
    each (`now_before` if none in the chunk), and each finish's interval: the
    closes at or before it.)"""
    ranked = np.sort(ft)
    times: list[float] = []
    nows: list[float] = []
    n = len(ranked)
    k = -1
    while True:
        # The next finish at or past the edge, after the last close (an edge that rounds down to the
        # closing finish's own time, floor(t / width) a whole number short, is passed by the next one).
        k = max(int(np.searchsorted(ranked, edge)), k + 1)
        if k == n:
            break
        t = float(ranked[k])
        now = float(ranked[k - 1]) if k else now_before
        while int(max(now, 0.0) / width) >= MAX_BINS:
            width *= 2
        times.append(t)
        nows.append(now)
        edge = (math.floor(t / width) + 1) * width
    closes = np.array(times)
    # (Where an edge rounds down to a close's own time, every finish at that time closes a bin in turn, all of
    # them the timeline's bin of that time, the loop's counts moving one finish at a time; by time they move
    # at once, into the same bin, and the sample that bin keeps is the next close's, after them all, alike.)
    return closes, nows, np.searchsorted(closes, ft, side="right")


def closes_on_grid(ft: np.ndarray, width: float, edge: float, now_before: float) -> Closes | None:
    """closes_in_order's closes without a sort, where the width stays and every
    edge is the grid's: the edges are n * width for whole n (the open bin's
    `edge` among them), so a finish's interval is found by the edges at or
    before it, a close is the first finish past an edge (its interval's
    least), and the last finish before it the greatest of the intervals
    before. The loop's next edge after a close, from floor(t / width), must
    be the grid's next, and no close may double the width: else None."""
    first = round(edge / width)
    top = float(ft.max())
    if first * width != edge or top < edge:
        return (np.empty(0), [], np.zeros(len(ft), dtype=np.int64)) if first * width == edge else None
    last = math.floor(top / width) + 2  # an edge past the last finish
    if last - first > 4 * len(ft) + 64:  # (sparse: a handful of finishes over many bins)
        return None
    grid = np.arange(first, last + 1) * width  # as the loop computes an edge: a whole number times the width
    group = np.searchsorted(grid, ft, side="right")  # the edges at or before each finish: 0, the open bin
    least = np.full(len(grid) + 1, math.inf)
    np.minimum.at(least, group, ft)
    most = np.full(len(grid) + 1, -math.inf)
    np.maximum.at(most, group, ft)
    closing = np.flatnonzero(least[1:] != math.inf) + 1  # the groups a finish closes: past an edge, not empty
    times = least[closing]
    before = np.maximum.accumulate(most)[closing - 1]  # the greatest finish of the groups before
    nows = np.where(before == -math.inf, now_before, before).tolist()
    if (np.floor(times / width) != first + closing - 1).any() or int(max(nows[-1], 0.0) / width) >= MAX_BINS:
        return None
    rank = np.zeros(len(grid) + 1, dtype=np.int64)
    rank[closing] = 1
    return times, nows, np.cumsum(rank)[group]
