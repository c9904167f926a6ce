"""Virtual time (`--speed max`): the model as a discrete-event simulation.

No process, no queue, no waiting: one heap of events in simulated time, as
SimPy keeps it. The model (docs/model.md):

- every message is in one FIFO queue at time 0; a failed attempt with retries
  left re-enters the back of it at fail time + its retry delay;
- a sender has `window` slots; a slot takes a message only when it can start
  it at once, and a sender's starts are at least 1/rate apart (a slot waiting
  for the cap holds nothing);
- at equal times: finished sends first, then retries entering the queue, then
  free slots taking work in order of (sender index, slot), a capped sender's
  in the order they went free.

Events are tuples (time, kind, key, attempt, seconds), compared on
(time, kind, key) only: kind FINISH < ARRIVE < START gives the tie order, and
key is unique within a kind (a global slot number for FINISH, an arrival
sequence number for ARRIVE, a slot, or a rate-capped sender's first slot, for
START). Messages are interchangeable in the model, so the queue is a count of
first attempts followed by a deque of retry attempt numbers.

Statistics cost nothing per attempt: every attempt's send time and outcome
come from the sender's pre-drawn blocks (sender_model.py), which are folded
into the sender's Stats a block at a time. The only per-attempt bookkeeping is
the counts and the reach times.

The code: _Simulation holds one run's state and has a handler per event kind
(_finish, _arrive, _start); _CapGate keeps the rate-capped senders' waiting
slots; _Bins hands the counts to the timeline bin by bin. The handlers use
plain attributes and lists, no per-event objects: this loop is the hot path
of `--speed max` (about a million attempts a second).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush, heapreplace

import numpy as np
import numpy.random  # (numpy loads it at its first use: 20 ms inside the first run, not at start-up)

from smsbatch.core.model import EXPIRED, INTERRUPTED, SENT, THROTTLED
from smsbatch.core.reach import reach_counts
from smsbatch.core.receipts import NO_RECEIPT, ReceiptCount, ReceiptFigures
from smsbatch.core.sender_model import BLOCK, Pacer, ReceiptDraws, RunOutages, SenderModel, fast_path
from smsbatch.core.stats import BucketCounts, Stats, buckets_of
from smsbatch.core.timeline import Timeline
from smsbatch.core.trace import TraceRow
from smsbatch.virtual.fast import advance, resumable

FINISH, ARRIVE, OUTAGE, EXPIRE, START = 0, 1, 2, 3, 4  # the tie order at equal times
CHUNK = 8192  # events between looks at the clock (display) and at signals
LOOK_EVENTS = 64  # ... while the fast path waits to take a gateway run back

Event = tuple[float, int, int, int, float]  # (time, kind, key, attempt, seconds): see above


@dataclass
class Progress:
    """Where the simulation is: plain numbers for the monitor."""

    now: float = 0.0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    # Per sender, the stats of every attempt finished so far: made when asked
    # (the monitor asks once per refresh), since the folded blocks alone miss
    # the current one and would show an average of 0 beside thousands sent.
    stats_now: Callable[[], list[Stats]] = list


@dataclass
class Outcome:
    sent: int
    failed: int
    retried: int
    sim_elapsed: float  # simulated time of the last final outcome
    reach: dict[str, float | None]  # percent -> simulated time the sent count reached it
    stats: list[Stats]  # per sender
    interrupted: bool
    sent_by_deadline: int = 0
    capped: list[float] = field(default_factory=list)  # per sender: slot-seconds held back by the rate cap
    trace: list[TraceRow] | None = None  # --trace: a row per attempt that ended
    receipts: ReceiptFigures | None = None  # when delivery receipts are modelled
    expired: int = 0  # messages not accepted within --validity


LISTED = 256  # rows of a block the fast path hands over as Python lists, and the loop extends them by


def lane_block(k: int) -> int:
    """The size of a lane's k-th block of draws (0-based): small first, so a
    window of thousands of slots draws little for each, then BLOCK. Both paths
    of virtual time fold a lane's statistics by these blocks, so they agree to the bit."""
    return min(BLOCK, 64 << (2 * k))


class _Lane:
    """One lane's pre-drawn attempts (a slot, or a sender: SenderModel.lanes):
    Python lists for the loop, arrays for the stats. `ahead` holds blocks drawn
    before they are needed (the fast path looks ahead, virtual/fast.py)."""

    def __init__(self, model: SenderModel, lane: int) -> None:
        self.model = model
        self.lane = lane
        self.stats = Stats()  # the folded blocks' counts and time sum; their buckets:
        self.bucket_counts = BucketCounts()
        self.folded = 0  # attempts in the blocks folded into the stats
        self.count = 0  # blocks drawn
        self.times = np.empty(0)
        self.failed = np.empty(0, dtype=bool)
        self.ahead: deque[tuple[np.ndarray, np.ndarray]] = deque()
        # Buckets of rows from `known_from` of the current block on (past its end: of the next), in order,
        # computed elsewhere (the fast path's bins) and given here, so that a block's fold need not.
        self.known: list[np.ndarray] = []
        self.known_from = 0
        self.known_count = 0

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """The lane's next block, from its streams."""
        block = self.model.block(lane_block(self.count), self.lane)
        self.count += 1
        return block

    def known_buckets(self, row: int, buckets: np.ndarray) -> None:
        """The buckets of rows `row`, `row` + 1, ... (of the current block, and
        on into the next), known already: the fold takes them. Rows given out
        of turn start the known ones afresh."""
        if not len(buckets):
            return
        if row != self.known_from + self.known_count:
            self.known, self.known_from, self.known_count = [], row, 0
        self.known.append(buckets.copy())  # (a copy: a view would keep the whole chunk's array until the fold)
        self.known_count += len(buckets)

    def _block_buckets(self) -> np.ndarray | None:
        """The current block's buckets, the known ones taken (the rest, and
        those before them, bucketed here); None: none known. What is known of
        the next block stays, from its row 0."""
        if not self.known_count:
            return None
        size, start = len(self.times), self.known_from
        known = self.known[0] if len(self.known) == 1 else np.concatenate(self.known)
        mine, rest = known[: size - start], known[size - start :]
        parts = [buckets_of(self.times[:start])] if start else []
        parts.append(mine)
        if start + len(mine) < size:
            parts.append(buckets_of(self.times[start + len(mine) :]))
        self.known, self.known_from, self.known_count = ([rest] if len(rest) else []), 0, len(rest)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def next_block(self) -> None:
        """Fold the used-up block into the stats; the next becomes the current one."""
        self.stats.record_totals(self.times, self.failed)
        found = self._block_buckets()
        if found is None:
            self.bucket_counts.add_times(self.times)
        else:
            self.bucket_counts.add(found)
        self.folded += len(self.times)
        self.times, self.failed = self.ahead.popleft() if self.ahead else self.draw()

    def refill(self, row: int, times: list[float], failed: list[bool]) -> tuple[list[float], list[bool], int]:
        """The loop's lists of the lane (`times`, `failed`) when they end at
        `row`: the next rows of the current block, if the lists hold only its
        first ones (the fast path hands a lane over so: a block's rest the loop
        will mostly never reach, converted a piece at a time), else the next
        block, whole: (times, failed, the row to take)."""
        if row < len(self.times):
            end = min(len(self.times), row + LISTED)
            times.extend(self.times[row:end].tolist())
            failed.extend(self.failed[row:end].tolist())
            return times, failed, row
        self.next_block()
        return self.times.tolist(), self.failed.tolist(), 0

    def lists_at(self, row: int) -> tuple[list[float], list[bool]]:
        """Lists for the loop that hold the current block's rows up to `row`
        as placeholders and the next few after (refill gives it the rest)."""
        end = min(len(self.times), row + LISTED)
        return [0.0] * row + self.times[row:end].tolist(), [False] * row + self.failed[row:end].tolist()

    def stats_with(self, used: int) -> Stats:
        """Stats of every attempt started so far (the current block up to `used`)."""
        stats = Stats().merge(self.stats)
        self.bucket_counts.into(stats.buckets)
        stats.record_block(self.times[:used], self.failed[:used])
        return stats


class _Blocks:
    """One sender's pre-drawn attempts, lane by lane."""

    def __init__(self, model: SenderModel) -> None:
        self.model = model
        self.lanes = [_Lane(model, lane) for lane in range(model.lanes)]

    def stats_with(self, used: Sequence[int]) -> Stats:
        """Stats of every attempt started so far (`used`: of each lane's current block),
        the lanes merged in their order."""
        stats = Stats()
        for lane, n in zip(self.lanes, used, strict=True):
            stats.merge(lane.stats_with(n))
        return stats


def _histogram(seconds: list[float]) -> dict[int, int]:
    if not seconds:
        return {}
    buckets, counts = np.unique(buckets_of(np.array(seconds)), return_counts=True)
    return dict(zip(buckets.tolist(), counts.tolist(), strict=False))


class _CapGate:
    """The caps (the model's Caps: a sender's own rate, and its account's,
    shared): a capped sender's starts are spaced by them, and a free slot
    waiting for a cap holds nothing. Its free slots wait here, in the order
    they went free (the lowest slot at a tie: the model's rule), behind one
    START event at the time its caps open (keyed by the sender's first slot,
    so that it sorts among the senders' slots)."""

    def __init__(
        self,
        models: Sequence[SenderModel],
        first_slot: list[int],
        events: list[Event],
        accounts: dict[str, Pacer],
        outages: RunOutages | None = None,
    ) -> None:
        self.pacers = [m.caps(accounts, outages) for m in models]  # the model's caps: when each sender's open
        self.gap = [caps.gap for caps in self.pacers]  # 0.0: no cap
        self.first_slot = first_slot
        self.events = events
        self.start_due = [False] * len(models)  # a START event is waiting for this sender's cap
        # Heaps of (free since, slot, held since): held since is when it began to wait with work there.
        self.held: list[list[tuple[float, int, float]]] = [[] for _ in models]
        self.capped_time = [0.0] * len(models)  # slot-seconds held back with work waiting

    def hold(self, slot: int, s: int, t: float, since: float | None = None) -> None:
        """Slot of capped sender s, free since `since` (t if None), waits from t
        on for the cap, with work there."""
        heappush(self.held[s], (t if since is None else since, slot, t))
        if not self.start_due[s]:
            self.start_due[s] = True
            heappush(self.events, (self.pacers[s].opens_at(t), START, self.first_slot[s], 0, 0.0))

    def let_one_start(self, s: int, t: float) -> int:
        """The cap opens at t with work waiting: the held slot that went free
        first starts now, and the next one when the cap opens again."""
        _, slot, held_since = heappop(self.held[s])
        self.capped_time[s] += t - held_since
        pacer = self.pacers[s]
        pacer.start(t)  # the cap is open at t: it starts now, the next one gap later
        self.start_due[s] = bool(self.held[s])
        if self.start_due[s]:
            opens = pacer.next_start if pacer.gate is None else pacer.opens_at(t)  # (the same, without a gate)
            heappush(self.events, (opens, START, self.first_slot[s], 0, 0.0))
        return slot

    def release(self, s: int) -> list[tuple[float, int]]:
        """The cap opens and there is no work: every held slot goes idle: (free since, slot)."""
        self.start_due[s] = False
        slots = [(since, slot) for since, slot, _ in self.held[s]]
        self.held[s].clear()
        return slots


class _Bins:
    """Hands the counts of each bin of simulated time to the timeline when the run leaves it."""

    def __init__(self, timeline: Timeline | None, senders: int) -> None:
        self.timeline = timeline
        self.edge = timeline.width if timeline else math.inf  # end of the open bin
        self.ended: list[float] = []  # send times of the attempts ended in the open bin
        # The run's counts when the last bin closed.
        self.sent = self.failed = self.retried = 0
        self.finished = [0] * senders
        self.failed_attempts = [0] * senders

    def close(self, run: _Simulation, t_in_bin: float, t_next: float) -> None:
        """Hand the counts of the bin holding t_in_bin over; the next bin is the one holding t_next."""
        timeline = self.timeline
        assert timeline is not None
        timeline.add_bin(
            t_in_bin,
            run.sent - self.sent,
            run.failed - self.failed,
            run.retried - self.retried,
            [f - c for f, c in zip(run.finished, self.finished, strict=False)],
            [f - c for f, c in zip(run.failed_attempts, self.failed_attempts, strict=False)],
            _histogram(self.ended),
        )
        timeline.sample(t_in_bin, run.backlog(), run.in_flight())
        self.sent, self.failed, self.retried = run.sent, run.failed, run.retried
        self.finished, self.failed_attempts = list(run.finished), list(run.failed_attempts)
        self.ended.clear()
        self.edge = (math.floor(t_next / timeline.width) + 1) * timeline.width


class _Simulation:
    """One run: the event heap, the queue, the slots, the counts, and a handler
    per event kind. Slots are numbered across senders (sender 0's first)."""

    def __init__(
        self,
        models: Sequence[SenderModel],
        blocks: list[_Blocks],
        messages: int,
        timeline: Timeline | None,
        deadline: float,
        accounts: dict[str, Pacer],
        outages: RunOutages | None = None,
    ) -> None:
        senders = len(models)
        self.blocks = blocks
        self.sender_of = [s for s, model in enumerate(models) for _ in range(model.window)]
        self.first_slot = first_slot = [self.sender_of.index(s) for s in range(senders)]
        # Lanes numbered across senders: each slot's (SenderModel.lane_of), and each sender's range of them.
        self.lanes = [lane for b in blocks for lane in b.lanes]
        bases = [0]
        for model in models:
            bases.append(bases[-1] + model.lanes)
        self.lane_range = [(bases[s], bases[s + 1]) for s in range(senders)]
        self.lane_of = [bases[s] + models[s].lane_of(slot - first_slot[s]) for slot, s in enumerate(self.sender_of)]
        self.retry_delay = [model.retry_delay for model in models]
        self.retries_left = [model.retries_left for model in models]
        self.outcome_of = [model.outcome for model in models]
        self.events: list[Event] = []
        self.gate = _CapGate(models, first_slot, self.events, accounts, outages)
        self.gap = self.gate.gap
        # Heap of the slots with nothing to do: (sender's first slot, free since or 0.0, slot), so that
        # a message wakes the lowest sender's, and of a capped sender the slot that went free first.
        self.idle: list[tuple[int, float, int]] = []
        # The queue: first attempts (interchangeable, so a count), then retries (attempt numbers).
        self.fresh = messages
        self.waiting: deque[int] = deque()
        self.pending = 0  # retries on their way back to the queue
        # Each lane's current block of draws, and how many of it are used.
        self.times: list[list[float]] = [[] for _ in self.lanes]
        self.fails: list[list[bool]] = [[] for _ in self.lanes]
        self.used = [0] * len(self.lanes)
        self.now = 0.0
        self.sent = self.failed = self.retried = self.seq = 0
        self.finished = [0] * senders  # attempts ended, per sender
        self.failed_attempts = [0] * senders
        self.first_end = [math.inf] * senders
        self.last_end = [-math.inf] * senders
        self.deadline, self.by_deadline = deadline, 0
        self.messages = messages
        self.reach_at = sorted(set(reach_counts(messages).values()))
        self.next_reach = self.reach_at.pop(0)
        self.reach_time: dict[int, float] = {}
        self.bins = _Bins(timeline, senders)
        self.ended = self.bins.ended

    def begin(self) -> None:
        """Every slot is free at time 0."""
        for slot, s in enumerate(self.sender_of):
            self._free(slot, s, 0.0)

    def run_at_head(self) -> None:
        """Handle every event at the next event's time (those it makes at that time too)."""
        events = self.events
        t = events[0][0]
        while events and events[0][0] == t:
            self.run_events(1)

    def run_events(self, count: int) -> None:
        """Handle up to `count` events, in time order."""
        events = self.events
        finish, arrive, start = self._finish, self._arrive, self._start
        for _ in range(count):
            if not events:
                return
            t, kind, key, attempt, seconds = events[0]
            if kind == FINISH:
                finish(t, key, attempt, seconds)
            elif kind == ARRIVE:
                arrive(t, attempt)
            else:
                start(t, key)

    # ---- the events ----

    def _finish(self, t: float, slot: int, attempt: int, seconds: float) -> None:
        """A send ends at t (`attempt` 0: it succeeded): count it; the slot goes
        on at once when nothing else happens at t, else it is free."""
        if t >= self.bins.edge:
            self.bins.close(self, self.now, t)
        # Receipts are counted after the bin closed: a delivery then never widens the timeline
        # ahead of the finishes (the fast path closes its bins so too).
        self._receipts_at(t, slot, attempt)
        self.now = t
        s = self.sender_of[slot]
        capped = self.gap[s]
        if capped:  # a capped sender may go idle at its cap, not at a finish
            self.last_end[s] = t
        self.ended.append(seconds)
        self.finished[s] += 1
        if not attempt:
            self.sent = sent = self.sent + 1
            if t <= self.deadline:
                self.by_deadline += 1
            if sent == self.next_reach:
                self._reached(sent, t)
        elif self.retries_left[s](attempt):
            self._retry(t, slot, s, attempt)
            return
        else:
            self.failed_attempts[s] += 1
            self.failed += 1
        events = self.events
        if (
            (self.fresh or self.waiting)
            and not capped
            and (len(events) < 2 or events[1][0] > t)
            and (len(events) < 3 or events[2][0] > t)
        ):  # the fast path: the slot goes on, the FINISH event becomes the next one
            attempt, seconds, failed_draw = self._next_attempt(s, slot)
            heapreplace(events, (t + seconds, FINISH, slot, attempt if failed_draw else 0, seconds))
        else:
            heappop(events)
            self._free(slot, s, t)

    def _retry(self, t: float, slot: int, s: int, attempt: int) -> None:
        """`attempt` failed at t with retries left: it re-enters the queue after its
        retry delay (its ARRIVE event takes the FINISH event's place)."""
        self.failed_attempts[s] += 1
        self.retried += 1
        self.seq += 1
        self.pending += 1
        heapreplace(self.events, (t + self.retry_delay[s](attempt), ARRIVE, self.seq, attempt + 1, 0.0))
        self._free(slot, s, t)

    def _reached(self, sent: int, t: float) -> None:
        self.reach_time[sent] = t
        self.next_reach = self.reach_at.pop(0) if self.reach_at else -1

    def _arrive(self, t: float, attempt: int) -> None:
        """A retry enters the back of the queue at t."""
        heappop(self.events)
        self.pending -= 1
        self.waiting.append(attempt)
        self._wake_one(t)

    def _start(self, t: float, key: int) -> None:
        """Slot `key` may start at t; for a capped sender, its cap opens (key: its first slot)."""
        heappop(self.events)
        s = self.sender_of[key]
        has_work = self.fresh or self.waiting
        if self.gap[s]:
            if has_work:
                opens = self.gate.pacers[s].opens_at(t)
                if opens > t:  # a sender of its account started first (lower index): wait for the account
                    heappush(self.events, (opens, START, key, 0, 0.0))
                    return
                self._start_send(self.gate.let_one_start(s, t), s, t)
            else:
                first = self.first_slot[s]
                for since, slot in self.gate.release(s):
                    heappush(self.idle, (first, since, slot))
        elif has_work:
            self._start_send(key, s, t)
        else:
            self._go_idle(key, s, t)

    # ---- the slots ----

    def _start_send(self, slot: int, s: int, t: float) -> None:
        """Slot of sender s starts the message at the head of the queue at t."""
        attempt, seconds, failed_draw = self._next_attempt(s, slot)
        due = t + seconds
        if due < self.first_end[s]:
            self.first_end[s] = due
        heappush(self.events, (due, FINISH, slot, attempt if failed_draw else 0, seconds))

    def _free(self, slot: int, s: int, t: float, since: float | None = None) -> None:
        """Slot is free at t (since `since`, if it was idle) and cannot start at once:
        it waits for work, or the cap."""
        if self.gap[s]:
            self.gate.hold(slot, s, t, since)
        elif self.fresh or self.waiting:
            heappush(self.events, (t, START, slot, 0, 0.0))  # after the other events at t
        else:
            self._go_idle(slot, s, t)

    def _go_idle(self, slot: int, s: int, t: float) -> None:
        heappush(self.idle, (self.first_slot[s], t if self.gap[s] else 0.0, slot))
        self.last_end[s] = max(self.last_end[s], t)

    def _wake_one(self, t: float) -> None:
        """A message entered the queue at t: the first idle slot (by sender, slot)
        that can start it at t is told; idle slots of a sender whose rate cap
        is closed until later wait for it instead (they take work then, if any)."""
        idle, pacers = self.idle, self.gate.pacers
        while idle:
            _, since, slot = heappop(idle)
            s = self.sender_of[slot]
            self._free(slot, s, t, since)
            if not self.gap[s]:
                return
            pacer = pacers[s]
            if (pacer.next_start if pacer.gate is None else pacer.opens_at(t)) <= t:
                return

    def _next_attempt(self, s: int, slot: int) -> tuple[int, float, bool]:
        """The message at the head of the queue (its attempt number), and the
        next draw of the lane of sender s's slot: (attempt, send time, failed?)."""
        if self.fresh:
            self.fresh -= 1
            attempt = 1
        else:
            attempt = self.waiting.popleft()
        lane = self.lane_of[slot]
        i = self.used[lane]
        if i == len(self.times[lane]):
            self.times[lane], self.fails[lane], i = self.lanes[lane].refill(i, self.times[lane], self.fails[lane])
        self.used[lane] = i + 1
        return attempt, self.times[lane][i], self.fails[lane][i]

    def _note_row(self, s: int, slot: int, outcome: int, t: float) -> None:
        """An attempt of slot ended at t with `outcome` outside _finish (--trace keeps a row)."""

    def _receipt_of_last(self) -> tuple[float, int] | None:
        """The receipt of the last message accepted (None: receipts not modelled)."""
        return None

    def _receipts_at(self, t: float, slot: int, attempt: int) -> None:
        """A finish at t: draw the receipt of what it accepted and count those due by t (receipts modelled)."""

    # ---- the end ----

    def backlog(self) -> int:
        """Messages in the queue, and retries on their way back to it."""
        return self.fresh + len(self.waiting) + self.pending

    def in_flight(self) -> list[int]:
        return [self.started(s) - f for s, f in enumerate(self.finished)]

    def started(self, s: int) -> int:
        """Attempts sender s has started (draws taken from its lanes)."""
        lo, hi = self.lane_range[s]
        lanes, used = self.lanes, self.used
        return sum(lanes[i].folded + used[i] for i in range(lo, hi))


class _TracedSimulation(_Simulation):
    """The same run, keeping a row per attempt (--trace). Each slot's start and
    attempt number are noted when it starts (in _start_send, or in _finish's
    fast path, seen as a draw taken there); the row is made when it ends. The
    untraced run never pays for this."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        slots = len(self.sender_of)
        self.rows: list[TraceRow] = []
        self.slot_start = [0.0] * slots
        self.slot_attempt = [0] * slots
        self.draws_taken = 0
        self.last_attempt = 0

    def _next_attempt(self, s: int, slot: int) -> tuple[int, float, bool]:
        attempt, seconds, failed = super()._next_attempt(s, slot)
        self.draws_taken += 1
        self.last_attempt = attempt
        return attempt, seconds, failed

    def _start_send(self, slot: int, s: int, t: float) -> None:
        super()._start_send(slot, s, t)
        self.slot_start[slot], self.slot_attempt[slot] = t, self.last_attempt

    def _note_row(self, s: int, slot: int, outcome: int, t: float) -> None:
        self.rows.append((s, slot - self.first_slot[s], self.slot_attempt[slot], self.slot_start[slot], t, outcome))

    def _finish(self, t: float, slot: int, attempt: int, seconds: float) -> None:
        s = self.sender_of[slot]
        outcome = self.outcome_of[s](attempt, True) if attempt else SENT  # the event's attempt: 0 when it was sent
        self._note_row(s, slot, outcome, t)
        row = len(self.rows) - 1
        taken = self.draws_taken
        super()._finish(t, slot, attempt, seconds)
        receipt = self._receipt_of_last()
        if receipt is not None and outcome == SENT:  # receipts modelled: the row says when its receipt comes
            self.rows[row] = (*self.rows[row][:6], receipt[0] if receipt[1] != NO_RECEIPT else None)
        if self.draws_taken != taken:  # the fast path: the slot went on at t
            self.slot_start[slot], self.slot_attempt[slot] = t, self.last_attempt


class _ReceiptSimulation(_Simulation):
    """The same run, with delivery receipts: each accepted message's receipt is
    drawn as it is accepted (ReceiptDraws, in acceptance order per sender, as
    a real-time sender draws them) and counted when it comes (ReceiptCount).
    A run without receipts never pays for this."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.receipt_draws = [ReceiptDraws(blocks.model) for blocks in self.blocks]
        self.last_receipt: tuple[float, int] | None = None
        validity = self.blocks[0].model.validity if self.blocks else math.inf
        self.receipt_count = ReceiptCount(self.messages, self.deadline, validity, self.bins.timeline)

    def _receipt_of_last(self) -> tuple[float, int] | None:
        return self.last_receipt

    def _receipts_at(self, t: float, slot: int, attempt: int) -> None:
        if not attempt:  # accepted
            self.last_receipt = self.receipt_draws[self.sender_of[slot]].take(t)
            self.receipt_count.add(*self.last_receipt)
        self.receipt_count.advance(t)


class _TracedReceiptSimulation(_TracedSimulation, _ReceiptSimulation):
    """Both: a row per attempt, and receipts."""


class _GatewaySimulation(_Simulation):
    """The same run with real gateways' behaviours (docs/model.md): a gateway's
    token bucket and its throttled answers, the pause after one, outages that
    interrupt the sends in flight, backups, and --validity. Every start of a
    sender with any of these waits for its Caps (its Gate: up, not paused, a
    backup only while the others are down). A message thrown back (throttled,
    interrupted) goes to the front of the queue: `front`, before the first
    attempts, while there are first attempts left, else the left of `waiting`.
    A run without these never pays for them."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        models: list[SenderModel] = [blocks.model for blocks in self.blocks]
        self.gap = [1.0 if m.gated else 0.0 for m in models]  # truthy: its starts wait for its Caps
        self.buckets = [m.bucket() for m in models]
        self.segments = models[0].segments if models else 1
        self.pause = models[0].throttle_pause if models else 0.0
        self.validity = models[0].validity if models else math.inf
        slots = len(self.sender_of)
        self.slot_start = [0.0] * slots
        self.slot_attempt = [0] * slots
        self.slot_throttled = [False] * slots
        self.last_attempt = 0
        self.front: deque[int] = deque()
        self.throttled = [0] * len(models)
        self.interrupted = [0] * len(models)
        self.rounds = [0] * len(models)  # per sender: draws that went round (throttled, interrupted), no attempt
        self.expired = 0
        self.queue_expired = False
        self.forgotten: list[tuple[int, float, bool]] = []  # draws that were no attempt: (sender, seconds, ok)
        self.outages = [caps.gate.outages if caps.gate else None for caps in self.gate.pacers]
        for s, outages in enumerate(self.outages):
            first = outages.first_after(-1.0) if outages is not None else None
            if first is not None:
                heappush(self.events, (first[0], OUTAGE, s, 0, 0.0))
        if self.validity < math.inf:
            heappush(self.events, (self.validity, EXPIRE, 0, 0, 0.0))

    def _count(self, name: str, t: float, count: int = 1) -> None:
        if self.bins.timeline is not None and count:
            self.bins.timeline.add_count(name, t, count)

    def run_events(self, count: int) -> None:
        events = self.events
        for _ in range(count):
            if not events:
                return
            t, kind, key, attempt, seconds = events[0]
            if kind == FINISH:
                self._finish(t, key, attempt, seconds)
            elif kind == ARRIVE:
                self._arrive(t, attempt)
            elif kind == START:
                self._start(t, key)
            elif kind == OUTAGE:
                self._outage(t, key)
            else:
                self._expire(t)

    # ---- the queue's front ----

    def _next_attempt(self, s: int, slot: int) -> tuple[int, float, bool]:
        if self.front:  # a message thrown back, ahead of the first attempts
            self.fresh += 1  # the base takes a first attempt and its draw: the attempt is this one
            _, seconds, failed = super()._next_attempt(s, slot)
            attempt = self.front.popleft()
        else:
            attempt, seconds, failed = super()._next_attempt(s, slot)
        self.last_attempt = attempt  # (the traced run's name for it too)
        return attempt, seconds, failed

    def _throw_back(self, t: float, attempts: list[int]) -> None:
        """Messages back to the front of the queue at t, the first of `attempts`
        first; after --validity they expire instead."""
        if t > self.validity or self.queue_expired:
            if attempts:  # (an outage after the end throws back nothing: the run's end stays the last outcome)
                self.expired += len(attempts)
                self._count("expired", t, len(attempts))
                self.now = max(self.now, t)
            return
        for attempt in reversed(attempts):
            if not self.fresh:
                self.waiting.appendleft(attempt)
            elif attempt == 1 and not self.front:
                self.fresh += 1  # first attempts are alike: one more at the head of them
            else:
                self.front.appendleft(attempt)
        for _ in attempts:
            self._wake_one(t)

    # ---- starts, answers, outages, expiry ----

    def _start_send(self, slot: int, s: int, t: float) -> None:
        bucket = self.buckets[s]
        if bucket is None or bucket.admit(t, self.segments):
            super()._start_send(slot, s, t)
            self.slot_throttled[slot] = False
        else:  # throttled: it takes its drawn send time, then the answer comes
            attempt, seconds, failed = self._next_attempt(s, slot)
            heappush(self.events, (t + seconds, FINISH, slot, attempt if failed else 0, seconds))
            self.slot_throttled[slot] = True
        self.slot_start[slot], self.slot_attempt[slot] = t, self.last_attempt

    def _finish(self, t: float, slot: int, attempt: int, seconds: float) -> None:
        if not self.slot_throttled[slot]:
            if attempt and t > self.validity and self.retries_left[self.sender_of[slot]](attempt):
                self._expire_retry(t, slot, attempt, seconds)
                return
            super()._finish(t, slot, attempt, seconds)
            return
        if t >= self.bins.edge:
            self.bins.close(self, self.now, t)
        self.now = t
        s = self.sender_of[slot]
        self.slot_throttled[slot] = False
        heappop(self.events)
        self.forgotten.append((s, seconds, attempt == 0))
        self.throttled[s] += 1
        self._count("throttled", t)
        self.rounds[s] += 1
        gate = self.gate.pacers[s].gate
        assert gate is not None
        gate.paused_until = max(gate.paused_until, t + self.pause)
        self._note_row(s, slot, EXPIRED if t > self.validity else THROTTLED, t)
        self._free(slot, s, t)
        self._throw_back(t, [self.slot_attempt[slot]])

    def _expire_retry(self, t: float, slot: int, attempt: int, seconds: float) -> None:
        """A failure after --validity with retries left: its message expires now."""
        self.now = t
        s = self.sender_of[slot]
        heappop(self.events)
        self.ended.append(seconds)
        self.finished[s] += 1
        self.failed_attempts[s] += 1
        self.expired += 1
        self._count("expired", t)
        self._note_row(s, slot, EXPIRED, t)
        self._free(slot, s, t)

    def _arrive(self, t: float, attempt: int) -> None:
        if self.queue_expired:  # counted when the queue expired
            heappop(self.events)
            self.pending -= 1
            return
        super()._arrive(t, attempt)

    def _outage(self, t: float, s: int) -> None:
        """Sender s goes down at t: its sends in flight are interrupted, their
        messages go to the front of the queue in the order they started."""
        heappop(self.events)
        outages = self.outages[s]
        assert outages is not None
        slots = range(self.first_slot[s], self.first_slot[s] + self.blocks[s].model.window)
        cut = [e for e in self.events if e[1] == FINISH and e[2] in slots]
        if cut:
            self.events[:] = [e for e in self.events if not (e[1] == FINISH and e[2] in slots)]
            heapify(self.events)
            self.now = max(self.now, t)
        cut.sort(key=lambda e: (self.slot_start[e[2]], e[2]))
        for _, _, slot, attempt, seconds in cut:
            self.interrupted[s] += 1
            self._count("interrupted", t)
            self.rounds[s] += 1
            self.forgotten.append((s, seconds, attempt == 0))
            self.slot_throttled[slot] = False
            self._note_row(s, slot, INTERRUPTED, t)
            self._free(slot, s, t)
        self._throw_back(t, [self.slot_attempt[e[2]] for e in cut])
        outage = outages.first_after(t)
        following = outages.first_after(outage[1]) if outage is not None else None
        work_left = self.backlog() or any(e[1] == FINISH for e in self.events)  # else no work can come back
        if following is not None and work_left:
            heappush(self.events, (following[0], OUTAGE, s, 0, 0.0))

    def _expire(self, t: float) -> None:
        """--validity: every message not accepted by now expires, queued or waiting for a retry."""
        heappop(self.events)
        queued = self.fresh + len(self.front) + len(self.waiting) + self.pending
        if queued:
            self.now = max(self.now, t)
        self.expired += queued
        self._count("expired", t, queued)
        self.fresh = 0
        self.front.clear()
        self.waiting.clear()
        self.queue_expired = True

    def in_flight(self) -> list[int]:
        return [n - r for n, r in zip(super().in_flight(), self.rounds, strict=False)]


class _TracedGatewaySimulation(_GatewaySimulation, _TracedSimulation):
    """Gateways, and a row per attempt."""


class _ReceiptGatewaySimulation(_GatewaySimulation, _ReceiptSimulation):
    """Gateways, and receipts."""


class _TracedReceiptGatewaySimulation(_GatewaySimulation, _TracedSimulation, _ReceiptSimulation):
    """Gateways, a row per attempt, and receipts."""


# The runs the fast path computes where the model lets it (sender_model.fast_path): not --trace, not cap=.
_VECTORISED = (_Simulation, _ReceiptSimulation, _GatewaySimulation, _ReceiptGatewaySimulation)


class VirtualEngine:
    def __init__(
        self,
        models: Sequence[SenderModel],
        messages: int,
        timeline: Timeline | None = None,
        deadline: float = math.inf,
        trace: bool = False,
        accounts: dict[str, Pacer] | None = None,
        outages: RunOutages | None = None,
        vectorise: bool = True,
    ) -> None:
        self.models = list(models)
        # The fast path where the model says it is exact (sender_model.fast_path, virtual/fast.py); False: the loop.
        self.vectorise = vectorise
        self.outages = outages  # the run's outages, every sender's (gateway runs)
        self.accounts = accounts if accounts is not None else {}  # the run's shared account caps, fresh
        self.trace = trace
        self.messages = messages
        self.blocks = [_Blocks(model) for model in self.models]
        self.progress = Progress()
        self.timeline = timeline
        self.deadline = deadline

    def run(self, tick: Callable[[Progress], bool] | None = None) -> Outcome:
        """Simulate to the end. `tick(progress)` is called every CHUNK events;
        it returns False to stop the run where it is (Ctrl-C)."""
        receipts = any(model.receipts for model in self.models)
        gateway = any(model.gateway or model.validity < math.inf for model in self.models)
        simulation = {
            (False, False, False): _Simulation,
            (True, False, False): _TracedSimulation,
            (False, True, False): _ReceiptSimulation,
            (True, True, False): _TracedReceiptSimulation,
            (False, False, True): _GatewaySimulation,
            (True, False, True): _TracedGatewaySimulation,
            (False, True, True): _ReceiptGatewaySimulation,
            (True, True, True): _TracedReceiptGatewaySimulation,
        }[(self.trace, receipts, gateway)]
        run = simulation(
            self.models, self.blocks, self.messages, self.timeline, self.deadline, self.accounts, self.outages
        )
        progress = self.progress
        progress.stats_now = lambda: self._final_stats(run)
        going = True
        kinds = (FINISH, ARRIVE, START)
        fast = self.vectorise and simulation in _VECTORISED and fast_path(self.models, self.trace)
        if fast:
            going = advance(run, self.models, kinds, tick, progress)
        else:
            run.begin()
        # A gateway run's moments (outages, the end of --validity) are the loop's; after one, the
        # fast path takes the run back as soon as it can (fast.resumable), looked at every few events.
        looking = fast and isinstance(run, _GatewaySimulation)
        resumed_at, look = -math.inf, LOOK_EVENTS
        while going and run.events:
            if looking and run.fresh > len(run.sender_of):
                run.run_at_head()
                if run.events and run.events[0][0] > resumed_at and resumable(run, self.models, kinds):
                    resumed_at = run.events[0][0]  # (a stretch that could not move on is not tried again there)
                    going = advance(run, self.models, kinds, tick, progress, resume=True)
                    look = LOOK_EVENTS
                    continue
                run.run_events(look)
                look = min(2 * look, CHUNK)  # a look reads every event: fewer while the loop keeps the run
            else:
                run.run_events(CHUNK)
            progress.now, progress.sent, progress.failed, progress.retried = run.now, run.sent, run.failed, run.retried
            if tick is not None and run.events and not tick(progress):
                break
        return self._outcome(run)

    def _outcome(self, run: _Simulation) -> Outcome:
        """The figures of the run, where it is (interrupted if events are left)."""
        if run.bins.timeline is not None:
            run.bins.close(run, run.now, run.now)
        reach = {p: run.reach_time.get(count) for p, count in reach_counts(self.messages).items()}
        return Outcome(
            run.sent,
            run.failed,
            run.retried,
            run.now,
            reach,
            self._final_stats(run),
            bool(run.events),
            run.by_deadline,
            run.gate.capped_time,
            run.rows if isinstance(run, _TracedSimulation) else None,
            run.receipt_count.figures(run.now if run.events else None) if isinstance(run, _ReceiptSimulation) else None,
            run.expired if isinstance(run, _GatewaySimulation) else 0,
        )

    def _final_stats(self, run: _Simulation) -> list[Stats]:
        stats = [b.stats_with(run.used[lo:hi]) for b, (lo, hi) in zip(self.blocks, run.lane_range, strict=True)]
        for _, kind, slot, attempt, seconds in run.events:  # interrupted: attempts in flight did not finish
            if kind == FINISH:
                stats[run.sender_of[slot]].forget(seconds, attempt == 0)
        for s, st in enumerate(stats):
            st.first_end, st.last_end = run.first_end[s], run.last_end[s]
        if isinstance(run, _GatewaySimulation):  # throttled and interrupted draws were no attempts
            for s, seconds, ok in run.forgotten:
                stats[s].forget(seconds, ok)
            for s, st in enumerate(stats):
                st.throttled, st.interrupted = run.throttled[s], run.interrupted[s]
        return stats
