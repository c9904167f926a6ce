"""The fast path of virtual time: the event loop's run, a chunk at a time.

Every message is in the queue at time 0, and first attempts are ahead of
every retry, so while the queue holds work every slot works back to back: a
slot of an uncapped sender starts its next attempt the moment its last one
ends, and draws it from its own lane (core/sender_model.py), so its ends are
a cumulative sum of its own draws (np.cumsum adds one after another, as the
loop does: end = start + seconds). A capped sender is one lane: its starts
are its cap's ticks (a cumulative sum of the gap) while a slot is free at
each, and its free slots take the ticks in the order they went free (the
gate's heap), so the r-th tick takes the r-th free time of all: one sort
(_segment; the capped time the loop adds, start minus that slot's held-since,
follows); where the cap keeps letting go (every slot busy at a tick), start
by start, as the loop's _CapGate steps it. The senders of one account are one
group: they take the account's ticks in turn (the lowest with a free slot),
each from its own lane, event by event on counts of free slots; which slot of
its sender each start takes then follows from one sort again (_in_turn).

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
from heapq import heapify, heappop, heappush
from typing import Any, NamedTuple, Protocol

import numpy as np

from smsbatch.core.receipts import ReceiptCount
from smsbatch.core.sender_model import ReceiptDraws, SenderModel
from smsbatch.core.stats import Stats, buckets_of
from smsbatch.core.timeline import MAX_BINS

CHUNK_STARTS = 1 << 16  # starts a chunk aims at, over every lane (its arrays: a few MB)
LANE_STARTS = 512  # ... and at least this many a lane (a chunk's per-lane work is Python: 30% less for 300 lanes)
SEGMENT_TICKS = 8192  # a capped sender's ticks looked at, at most, at a time


class Lane(Protocol):
    """A lane's pre-drawn attempts (engine._Lane)."""

    times: np.ndarray
    failed: np.ndarray
    ahead: deque[tuple[np.ndarray, np.ndarray]]

    def draw(self) -> tuple[np.ndarray, np.ndarray]: ...

    def next_block(self) -> None: ...


def _peek(lane: Lane, row: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [row, row + count) of the lane's draws, counted from the start of its
    current block, drawing blocks ahead as needed; nothing is taken."""
    times: list[np.ndarray] = []
    failed: list[np.ndarray] = []
    have, i, block_times, block_failed = 0, -1, lane.times, lane.failed
    while True:
        if row < len(block_times):
            times.append(block_times[row : row + count - have])
            failed.append(block_failed[row : row + count - have])
            have += len(times[-1])
            row = 0
        else:
            row -= len(block_times)
        if have >= count:
            break
        i += 1
        if i == len(lane.ahead):
            lane.ahead.append(lane.draw())
        block_times, block_failed = lane.ahead[i]
    if len(times) == 1:
        return times[0], failed[0]
    return np.concatenate(times), np.concatenate(failed)


def _order(primary: np.ndarray, secondary: np.ndarray | None = None) -> np.ndarray:
    """np.lexsort((secondary, primary)), or np.argsort(primary, kind="stable"):
    the same order, by numpy's vectorised quicksort where `primary` has no ties
    (then every sort gives it; twice as fast as a stable sort), else by theirs."""
    order = np.argsort(primary)
    ranked = primary[order]
    if len(ranked) > 1 and (ranked[1:] == ranked[:-1]).any():
        return np.argsort(primary, kind="stable") if secondary is None else np.lexsort((secondary, primary))
    return order


def _consume(lane: Lane, used: int, count: int) -> int:
    """Take `count` rows from `used` on; the new `used`. A block passed is folded (as the loop's refill does)."""
    while used + count > len(lane.times):
        count -= len(lane.times) - used
        lane.next_block()
        used = 0
    return used + count


class _Slot:
    """A slot of an uncapped sender: its own lane, back to back."""

    __slots__ = ("began", "cur", "g", "lane", "mean", "rows", "s", "slot", "start")

    def __init__(self, s: int, slot: int, g: int, lane: Lane, mean: float) -> None:
        self.s, self.slot, self.g, self.lane, self.mean = s, slot, g, lane, mean
        self.start = 0.0  # its next start: the end of the attempt in flight
        self.cur: tuple[float, bool, int] | None = None  # the attempt in flight: (seconds, failed, attempt)
        self.began = 0.0  # ... and when it started
        # This chunk's rows from the next start on: (starts, ends, seconds, failed)
        self.rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def look(self, used: int, t1: float) -> None:
        """Its rows from its next start until one starts at or after t1."""
        count = int((t1 - self.start) / self.mean * 1.25) + 16
        while True:
            seconds, failed = _peek(self.lane, used, count)
            buf = np.empty(count + 1)
            buf[0] = self.start
            buf[1:] = seconds
            np.cumsum(buf, out=buf)  # one addition after another: end = start + seconds, as the loop adds
            if buf[-1] >= t1:
                self.rows = (buf[:-1], buf[1:], seconds, failed)
                return
            count *= 2


class _Member:
    """A sender of a capped lane group: its slots, its lane, its own cap's gap."""

    __slots__ = ("first_slot", "g", "lane", "own_gap", "s", "window")

    def __init__(self, s: int, first_slot: int, window: int, g: int, lane: Lane, own_gap: float) -> None:
        self.s, self.first_slot, self.window, self.g, self.lane, self.own_gap = s, first_slot, window, g, lane, own_gap


class _Capped:
    """A capped sender (one lane), or the senders of an account (a lane each):
    their starts at the cap, as the loop's _CapGate makes them: a sender's
    free slots in the order they went free. Senders of one account whose own
    caps never bind (no wider than the account's) take the account's ticks
    so: at each, the lowest sender with a free slot (its START sorts first),
    with its slot that went free first. The state is the gate's: the cap's
    next start, the START event waiting (due), the free slots (sorted
    (free since, slot, held since)) and those in flight (a heap of (end,
    slot, seconds, failed, row, start)); a row numbers the group's starts,
    whichever member's lane it draws from."""

    __slots__ = (
        "attempt_of",
        "capped",
        "due",
        "first_slot",
        "gap",
        "held",
        "index_of",
        "inflight",
        "last_start",
        "member_of",
        "members",
        "next_start",
        "row",
        "window",
    )

    def __init__(self, members: list[_Member], gap: float) -> None:
        self.members, self.gap = members, gap
        slots = [m.first_slot + j for m in members for j in range(m.window)]
        self.index_of = {slot: j for j, slot in enumerate(slots)}  # a slot's bit
        self.member_of = [i for i, m in enumerate(members) for _ in range(m.window)]  # a bit's member
        self.window = len(slots)
        self.first_slot = members[0].first_slot
        self.next_start = 0.0  # its Pacer
        self.due: float | None = 0.0  # its START event, if one is waiting
        self.held = [(0.0, slot, 0.0) for slot in slots]  # free slots, as the gate's: (free since, slot, held since)
        self.inflight: list[tuple[float, int, float, bool, int, float]] = []
        self.capped = [0.0] * len(members)  # per member: slot-seconds held back by the cap
        self.row = 0  # attempts started: the next one's row
        self.attempt_of: dict[int, int] = {}  # the attempt numbers of the rows in flight
        self.last_start: list[float | None] = [None] * len(members)  # per member, its last start here

    def state(self) -> tuple[Any, ...]:
        return (
            self.next_start,
            self.due,
            list(self.held),
            list(self.inflight),
            list(self.capped),
            self.row,
            list(self.last_start),
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        self.next_start, self.due, held, inflight, capped, self.row, last_start = state
        self.held, self.inflight = list(held), list(inflight)
        self.capped, self.last_start = list(capped), list(last_start)

    def step(self, t1: float, used: list[int]) -> _Step:
        """Its events before t1, from the lanes' rows `used` on: a _Step. Long
        stretches where the cap binds go a segment at a time (_segment); where it
        keeps letting go (every slot busy at a tick), start by start (_stepped)."""
        step = _Step(len(self.members))
        slow_until = -math.inf
        ticks, slow = 256, 256  # a segment's ticks, a slow stretch's: each doubles while it pays
        while True:
            if self.due is not None:
                opens = self.due
            elif self.inflight:
                f = self.inflight[0][0]
                opens = f if f >= self.next_start else self.next_start
            else:
                break
            rows = [u + n for u, n in zip(used, step.drawn, strict=True)]
            if opens >= t1 or len(self.members) > 1:  # (an account's senders draw from their own lanes: in turn)
                self._stepped(t1, rows, step)
                break
            if opens < slow_until:
                until = min(slow_until, t1)
                self._stepped(until, rows, step)
                if until == t1:
                    break
                continue
            limit = min(t1, opens + ticks * self.gap)
            n, reached = self._segment(limit, rows, step)
            if reached and limit == t1:
                break
            if reached:
                ticks, slow = min(2 * ticks, SEGMENT_TICKS), 256
            elif n < 16:  # the cap keeps letting go here: a while start by start
                slow_until = opens + slow * self.gap
                ticks, slow = 256, min(2 * slow, 1 << 16)
        return step

    def _stepped(self, t_stop: float, rows: list[int], step: _Step) -> None:
        """The gate's events before t_stop one by one, as the loop has them, in
        two passes: a finish frees a slot (before a start at the same time);
        the cap opens with a slot free: the lowest member with one starts, the
        next start a gap later; with none free, at the next finish. That needs
        only how many slots each member has free, so the events go on counts
        and a heap of (end, member); which slot of its member each start takes
        (the one that went free first) then follows for each member at once
        (_in_turn), as in _segment."""
        if self.due is not None:
            opens = self.due
        else:
            opens = max(self.inflight[0][0], self.next_start) if self.inflight else math.inf
        need = int(max(0.0, t_stop - opens) / self.gap) + 3 if opens < t_stop else 0  # the most that can start
        members, index_of, member_of = self.members, self.index_of, self.member_of
        draws = [
            _peek(m.lane, row, need) if need else (np.empty(0), np.empty(0, dtype=bool))
            for m, row in zip(members, rows, strict=True)
        ]
        times = [seconds.tolist() for seconds, _ in draws]
        free = [0] * len(members)  # each member's free slots
        for _, slot, _ in self.held:
            free[member_of[index_of[slot]]] += 1
        having = sum(1 << m for m, n in enumerate(free) if n)  # bit m: member m has a free slot
        busy = [(end, member_of[index_of[slot]]) for end, slot, *_ in self.inflight]
        heapify(busy)
        member_at = {1 << m: m for m in range(len(members))}
        next_start, due, gap = self.next_start, self.due, self.gap
        taken = [0] * len(members)
        began: list[float] = []
        who: list[int] = []
        while True:
            ends = busy[0][0] if busy else math.inf
            if due is not None and due < ends:  # the cap opens with a slot free: the lowest member with one
                if due >= t_stop:
                    break
                bit = having & -having
                m = member_at[bit]
                free[m] -= 1
                if not free[m]:
                    having ^= bit
                i = taken[m]
                taken[m] = i + 1
                heappush(busy, (due + times[m][i], m))
                began.append(due)
                who.append(m)
                next_start = due + gap
                due = next_start if having else None
            else:  # a finish (before a start at the same time)
                if ends >= t_stop:
                    break
                end, m = heappop(busy)
                free[m] += 1
                having |= 1 << m
                if due is None:
                    due = end if end >= next_start else next_start
        starts = np.array(began)
        owners = np.array(who, dtype=np.int64)
        turns: list[_Turns] = []
        for m in range(len(members)):
            mine = np.flatnonzero(owners == m) if len(members) > 1 else np.arange(len(starts))
            seconds, failed = draws[m]
            turns.append(self._in_turn(m, starts[mine], self.row + mine, seconds[: len(mine)], failed, t_stop))
        self._took(turns, step)
        self.next_start, self.due = next_start, due
        self.row += len(starts)
        if len(starts):
            step.starts.append(starts)
            step.owners.append(owners)

    def _in_turn(
        self,
        m: int,
        at: np.ndarray,
        rows_of: np.ndarray,
        seconds: np.ndarray,
        failed: np.ndarray,
        t_stop: float,
        ticks: np.ndarray | None = None,
    ) -> _Turns:
        """Member m's starts `at` (rows `rows_of`, draws `seconds`, `failed`),
        or with `ticks` (`at` then the cap's ticks before t_stop, `ticks` them
        and the next), as many of them as a slot is free for: the slot each
        takes, its free slots in turn (the r-th start takes the r-th free time
        of its slots at the start and of its own ends: one sort, and pointer
        doubling to name each start's slot; where free times are equal (the
        slots' numbers order them), start by start (_turns_one_by_one)."""
        member = self.members[m]
        window = member.window
        slots = np.arange(member.first_slot, member.first_slot + window)
        end0, held0, busy = np.zeros(window), np.zeros(window), np.zeros(window, dtype=bool)
        d0, f0, s0 = np.zeros(window), np.zeros(window, dtype=bool), np.zeros(window)
        w0 = np.zeros(window, dtype=np.int64)
        mine = range(member.first_slot, member.first_slot + window)
        for free_since, slot, held_since in self.held:
            if slot in mine:
                j = slot - member.first_slot
                end0[j], held0[j] = free_since, held_since
        for end, slot, took, fail, in_row, began in self.inflight:
            if slot in mine:
                j = slot - member.first_slot
                end0[j], held0[j], busy[j], d0[j], f0[j], w0[j], s0[j] = end, end, True, took, fail, in_row, began
        e = at + seconds
        first = np.lexsort((np.arange(window), end0))
        free_at = np.concatenate((end0[first], e))
        order = _order(free_at)
        ranked = free_at[order]
        n, until = len(at), t_stop
        if ticks is not None:  # the first tick that comes before its free time (no slot free) ends them
            late = np.flatnonzero(ranked[:n] > at)
            if len(late):
                n, until = int(late[0]), float(ticks[int(late[0])])
                at, e, rows_of, seconds = at[:n], e[:n], rows_of[:n], seconds[:n]
        look = min(n + 1, len(ranked))
        tied = np.flatnonzero(ranked[1:look] == ranked[: look - 1])
        if (len(tied) and ((order[tied] >= window) | (order[tied + 1] >= window)).any()) or (
            n and not seconds.min() > 0.0
        ):  # equal free times (their slots' numbers order them), or a start whose slot is free again at once
            src, own = _turns_one_by_one(first, end0[first], at, e, ticks is not None)
            n = len(src)
            if n < len(at):
                until = float(ticks[n]) if ticks is not None else until
                at, e, rows_of, seconds = at[:n], e[:n], rows_of[:n], seconds[:n]
        else:
            src = order[:n]
            root = np.concatenate((np.arange(window), src))
            while len(src) and root[window:].max() >= window:  # (a chain's length doubles each time)
                root = root[root]
            own = first[root[window:]]  # each start's slot, of the member's
        capped = self.capped[m]
        if n:  # capped_time += start - held since, start after start, as the gate adds them
            held_at = np.concatenate((held0[first], e))[src]
            capped = float(np.cumsum(np.concatenate(([capped], at - held_at)))[-1])
        fl = failed[:n]
        done0 = busy & (end0 < until)
        done = e < until
        finished = None
        if done0.any() or done.any():
            j0 = np.flatnonzero(done0)
            finished = np.column_stack(
                (
                    np.concatenate((end0[j0], e[done])),
                    np.concatenate((d0[j0], seconds[done])),
                    np.concatenate((f0[j0], fl[done])),
                    np.concatenate((slots[j0], slots[own[done]])),
                    np.concatenate((w0[j0], rows_of[done])),
                )
            )
        left = np.ones(window + n, dtype=bool)
        left[src] = False
        held: list[tuple[float, int, float]] = []
        inflight: list[Any] = []
        for i in np.flatnonzero(left).tolist():
            if i < window:
                j = int(first[i])
                slot = int(slots[j])
                if not busy[j]:
                    held.append((float(end0[j]), slot, float(held0[j])))
                elif end0[j] < until:
                    held.append((float(end0[j]), slot, float(end0[j])))
                else:
                    inflight.append((float(end0[j]), slot, float(d0[j]), bool(f0[j]), int(w0[j]), float(s0[j])))
            else:
                k = i - window
                slot = int(slots[own[k]])
                end = float(e[k])
                if end < until:
                    held.append((end, slot, end))
                else:
                    inflight.append((end, slot, float(seconds[k]), bool(fl[k]), int(rows_of[k]), float(at[k])))
        first_end, last_start = (float(e.min()), float(at[-1])) if n else (math.inf, math.nan)
        return _Turns(n, until, capped, finished, held, inflight, first_end, last_start)

    def _segment(self, t1: float, rows: list[int], step: _Step) -> tuple[int, bool]:
        """(A sender alone: one lane.) Starts at the cap's ticks (each gap after the last, added one after
        another as the Pacer adds them) for as long as a slot is free at each,
        before t1: (starts, reached t1?). Free slots take the ticks in turn
        (_in_turn); the first tick that comes before any is free ends the
        segment: the next start waits for a finish."""
        gap = self.gap
        if self.due is not None:
            tau0 = self.due
        else:
            f = self.inflight[0][0]
            tau0 = f if f >= self.next_start else self.next_start
        n = int((t1 - tau0) / gap) + 3
        ticks = np.full(n, gap)
        ticks[0] = tau0
        np.cumsum(ticks, out=ticks)
        count = int(np.searchsorted(ticks, t1))  # the ticks before t1
        seconds, failed = _peek(self.members[0].lane, rows[0], count)
        turns = self._in_turn(0, ticks[:count], self.row + np.arange(count), seconds, failed, t1, ticks)
        self._took([turns], step)
        if turns.started:
            step.starts.append(ticks[: turns.started])
            step.owners.append(np.zeros(turns.started, dtype=np.int64))
        reached = turns.started == count
        self.next_start = float(ticks[turns.started])
        self.due = self.next_start if reached and self.held else None
        self.row += turns.started
        return turns.started, reached

    def _took(self, turns: list[_Turns], step: _Step) -> None:
        """The members' starts in turn (_in_turn), into the group's state and the step."""
        held: list[tuple[float, int, float]] = []
        inflight: list[tuple[float, int, float, bool, int, float]] = []
        for m, taken in enumerate(turns):
            self.capped[m] = taken.capped
            if taken.finished is not None:
                step.finishes.append(taken.finished)
            held += taken.held
            inflight += taken.inflight
            step.drawn[m] += taken.started
            step.first_end[m] = min(step.first_end[m], taken.first_end)
            if taken.started:
                self.last_start[m] = taken.last_start
        held.sort()
        heapify(inflight)
        self.held, self.inflight = held, inflight


def _turns_one_by_one(
    first: np.ndarray, free0: np.ndarray, at: np.ndarray, ends: np.ndarray, ticks: bool
) -> tuple[np.ndarray, np.ndarray]:
    """_in_turn's choice start by start, as the gate's heap makes it: each start
    takes the free slot that went free first (the lowest at a tie), and its
    slot is free again at its end (a finish before a start at the same time).
    Slots by bit; `first` their order at the start (free0: their free times);
    events numbered as _in_turn numbers them. With `ticks`, the first start no
    slot is free for ends them. (src, own): each start's event and slot."""
    window = len(first)
    free = [(float(t), int(j), i) for i, (t, j) in enumerate(zip(free0.tolist(), first.tolist(), strict=True))]
    heapify(free)
    later: list[tuple[float, int, int]] = []  # (end, slot, event) of the attempts started
    src: list[int] = []
    own: list[int] = []
    for k, (t, end) in enumerate(zip(at.tolist(), ends.tolist(), strict=True)):
        while later and later[0][0] <= t:
            heappush(free, heappop(later))
        if not free:
            if ticks:
                break
            raise AssertionError("a start with no slot free")
        _, j, event = heappop(free)
        src.append(event)
        own.append(j)
        heappush(later, (end, j, window + k))
    return np.array(src, dtype=np.int64), np.array(own, dtype=np.int64)


class _Turns(NamedTuple):
    """A member's starts in turn (_Capped._in_turn): how many, until when, its
    capped time then, its finishes (as _Step keeps them, or None), its free
    slots and attempts in flight at `until`, the first end of its starts."""

    started: int
    until: float
    capped: float
    finished: np.ndarray | None
    held: list[tuple[float, int, float]]
    inflight: list[Any]
    first_end: float
    last_start: float


class _Step:
    """A capped group's events in a chunk: its starts (times, and which member
    started each), its finishes as arrays (end, seconds, failed, slot, row),
    and per member the first end of an attempt started and the rows drawn."""

    __slots__ = ("drawn", "finishes", "first_end", "owners", "starts")

    def __init__(self, members: int) -> None:
        self.starts: list[np.ndarray] = []
        self.owners: list[np.ndarray] = []
        self.finishes: list[np.ndarray] = []
        self.first_end = [math.inf] * members
        self.drawn = [0] * members


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
        self.capped: list[_Capped] = []
        rate = 0.0
        groups: dict[str | int, list[_Member]] = {}  # capped senders: an account's together, else each alone
        for s, model in enumerate(models):
            first = run.first_slot[s]
            if model.capped:
                g = run.lane_of[first]
                member = _Member(s, first, model.window, g, run.lanes[g], model.start_gap)
                groups.setdefault(model.spec.account or s, []).append(member)
            else:
                for slot in range(first, first + model.window):
                    g = run.lane_of[slot]
                    self.slots.append(_Slot(s, slot, g, run.lanes[g], model.mean_send))
                rate += model.window / model.mean_send
        for members in groups.values():
            gap = max(max(models[m.s].start_gap, models[m.s].account_gap) for m in members)
            self.capped.append(_Capped(members, gap))
            work = sum(m.window / models[m.s].mean_send for m in members)
            rate += min(1.0 / gap, work)
        self.capped.sort(key=lambda c: c.first_slot)
        self.sender_of = np.array(run.sender_of, dtype=np.int64)
        lanes = len(self.slots) + len(self.capped)
        self.span = max(CHUNK_STARTS, LANE_STARTS * lanes) / rate
        self.senders = len(models)
        self.max_retries = np.array([model.max_retries for model in models])
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
        self.t0 = 0.0
        self.drain_span = self.span / 4  # the chunk _drain tries first
        self.steps: list[_Step] = []
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
                mine = slot.rows[0][: int(np.searchsorted(slot.rows[0], t1))]
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
            m = int(np.searchsorted(st, t1))
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
                hit = done[done[:, 2] != 0.0]
                if len(hit):
                    failed_at = min(failed_at, float(hit[:, 0].min()))
        if not times:  # nothing starts in the chunk (nor ends)
            return []
        at, key = np.concatenate(times), np.concatenate(keys)
        n = len(at)
        fresh = self.run.fresh  # first attempts left at the head (those that started with the last of them)
        waiting = fresh + len(self.waiting) - self.taken
        if n > waiting + len(self.pending):
            return None
        order = _order(at, key)
        taken = np.concatenate(
            (
                np.ones(min(n, fresh), dtype=np.int64),
                self.waiting[self.taken : self.taken + max(0, min(n, waiting) - fresh)],
            )
        )
        if n > waiting:  # retries that come back during the chunk: each must be back by its start
            by_arrival = _order(self.pending, self.pending_seq)[: n - waiting]
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
        # The slots' attempts in flight at t0 that end in the chunk (one array each), then each slot's own
        # (views of its rows, the sender and slot repeated after): the finishes need no order.
        ended: list[tuple[float, float, bool, int, int, int]] = []
        lengths: list[int] = []
        senders: list[int] = []
        slot_numbers: list[int] = []
        lane = 0
        for slot in self.slots:
            rows = slot.rows
            if rows is None:
                continue
            mine = attempts[lane] if attempts is not None else None
            lane += 1
            st, en, seconds, failed = rows
            m = int(np.searchsorted(st, t1))
            if not m:
                slot.rows = None
                continue
            s = slot.s
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
            run.first_end[s] = min(run.first_end[s], float(en[0]))
            slot.cur = (float(seconds[m - 1]), bool(failed[m - 1]), int(mine[m - 1]) if mine is not None else 1)
            slot.began = float(st[m - 1])
            slot.start = float(en[m - 1])
            run.used[slot.g] = _consume(slot.lane, run.used[slot.g], m)
            self.started[s] += m
            slot.rows = None
        if lengths:
            fin_s.append(np.repeat(np.array(senders, dtype=np.int64), lengths))
            fin_slot.append(np.repeat(np.array(slot_numbers, dtype=np.int64), lengths))
            if attempts is None:
                fin_a.append(np.ones(sum(lengths), dtype=np.int64))
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
                done = np.concatenate(step.finishes)
                row_ids = done[:, 4].astype(np.int64)
                new = row_ids >= first_row
                atts = np.empty(len(row_ids), dtype=np.int64)
                atts[new] = mine[row_ids[new] - first_row]
                for i in np.flatnonzero(~new).tolist():
                    atts[i] = attempt_of.pop(int(row_ids[i]))
                slots = done[:, 3].astype(np.int64)
                by_sender = self.sender_of[slots]
                fin_t.append(done[:, 0])
                fin_d.append(done[:, 1])
                fin_f.append(done[:, 2].astype(bool))
                fin_a.append(atts)
                fin_s.append(by_sender)
                fin_slot.append(slots)
                for member in c.members:
                    ends = done[:, 0] if len(c.members) == 1 else done[by_sender == member.s, 0]
                    if len(ends):
                        run.last_end[member.s] = float(ends.max())
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
                    run.first_end[s] = min(run.first_end[s], step.first_end[i])
                    run.used[member.g] = _consume(member.lane, run.used[member.g], step.drawn[i])
                    self.started[s] += step.drawn[i]
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
                keep = _order(self.pending, self.pending_seq)[count - waiting :]
                self.pending, self.pending_seq = self.pending[keep], self.pending_seq[keep]
                self.pending_attempt = self.pending_attempt[keep]
        started_before = list(self.started)
        for s, st in lane_starts:
            started_before[s] -= len(st)
        if sum(len(part) for part in fin_t):
            self._finishes(
                np.concatenate(fin_t),
                np.concatenate(fin_d),
                np.concatenate(fin_f).astype(bool),
                np.concatenate(fin_s),
                np.concatenate(fin_slot),
                np.concatenate(fin_a),
                lane_starts,
                started_before,
            )
        # The retries back by t1 join the queue, in the order they came back.
        back = self.pending < t1
        if back.any():
            order = _order(self.pending[back], self.pending_seq[back])
            self.waiting = np.concatenate((self.waiting[self.taken :], self.pending_attempt[back][order]))
            self.taken = 0
            self.pending, self.pending_seq = self.pending[~back], self.pending_seq[~back]
            self.pending_attempt = self.pending_attempt[~back]

    def _finishes(
        self,
        ft: np.ndarray,
        fd: np.ndarray,
        ff: np.ndarray,
        fs: np.ndarray,
        fslot: np.ndarray,
        fa: np.ndarray,
        lane_starts: list[tuple[int, np.ndarray]],
        started_before: list[int],
    ) -> None:
        """The chunk's finishes (in the lanes' order, not in time): retries,
        counts, reach times, bins. Only the bins' closes need the time order,
        and only the finishes' times of it: a finish's close is found by its
        time (every finish at a close's time is at or after the closing one in
        the loop too: the first of them closes), so the counts at each close
        come from one count over (close, sender, outcome)."""
        run = self.run
        retry = ff & (fa <= self.max_retries[fs])
        ok = ~ff
        if retry.any():
            self._retries(ft[retry], fs[retry], fslot[retry], fa[retry])
        ranked = np.sort(ft)
        code = fs * 3 + (ff.astype(np.int64) * 2 - retry)  # sender, then: 0 sent, 1 to retry, 2 failed for good
        before = (run.now, run.sent, run.failed, run.retried, list(run.finished), list(run.failed_attempts))
        width = 3 * self.senders
        if run.bins.timeline is not None:
            counts = self._close_bins(ranked, ft, fd, code, lane_starts, started_before, before)
        else:
            counts = np.bincount(code, minlength=width).reshape(1, self.senders, 3)
        total = counts.sum(axis=0)  # per sender: sent, to retry, failed for good
        sent = int(total[:, 0].sum())
        sent_before = run.sent
        in_time: np.ndarray | None = None  # the accepted finishes' times, in time order
        while run.next_reach != -1 and sent_before + sent >= run.next_reach:
            if in_time is None:
                in_time = np.sort(ft[ok])
            run._reached(run.next_reach, float(in_time[run.next_reach - sent_before - 1]))
        run.sent += sent
        run.failed += int(total[:, 2].sum())
        run.retried += int(total[:, 1].sum())
        if run.deadline >= ranked[-1]:
            run.by_deadline += sent
        elif run.deadline >= ranked[0]:
            run.by_deadline += int(np.count_nonzero(ok & (ft <= run.deadline)))
        for s, (sent_s, retried_s, failed_s) in enumerate(total.tolist()):
            run.finished[s] += sent_s + retried_s + failed_s
            run.failed_attempts[s] += retried_s + failed_s
        run.now = float(ranked[-1])
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
            order = _order(ft, fslot)
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
        order = _order(ft, fslot)
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
        ranked: np.ndarray,
        ft: np.ndarray,
        fd: np.ndarray,
        code: np.ndarray,
        lane_starts: list[tuple[int, np.ndarray]],
        started_before: list[int],
        before: tuple[float, int, int, int, list[int], list[int]],
    ) -> np.ndarray:
        """The timeline's bins that close in this chunk, as _Bins.close closes
        them: at the first finish at or past the open bin's edge, with the
        counts of everything before that finish. `ranked`: the finishes'
        times in order. The counts (close, sender, outcome: see _finishes),
        the open bin's last."""
        run = self.run
        bins = run.bins
        timeline = bins.timeline
        now_before, sent_before, failed_before, retried_before, finished_before, fa_before = before
        # Where the bins close (the width doubling as the timeline's bin_of doubles it).
        closes: list[tuple[int, float, float]] = []  # (place of the finish, its time, the last finish before it)
        width, edge, n = timeline.width, bins.edge, len(ranked)
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
            closes.append((k, t, now))
            edge = (math.floor(t / width) + 1) * width
        times = np.array([t for _, t, _ in closes])
        # Each finish's interval: the closes at or before it. (Where an edge rounds down to a close's own
        # time, every finish at that time closes a bin in turn, all of them the timeline's bin of that
        # time, the loop's counts moving one finish at a time; by time they move at once, into the same
        # bin, and the sample that bin keeps is the next close's, after them all, alike.)
        interval = np.searchsorted(times, ft, side="right")
        senders = self.senders
        counts = np.bincount(interval * 3 * senders + code, minlength=(len(closes) + 1) * 3 * senders)
        counts = counts.reshape(len(closes) + 1, senders, 3)
        last = interval == len(closes)  # the finishes in the bin left open
        if not closes:
            self.open.append(fd)
            return counts
        upto = np.cumsum(counts[:-1], axis=0)  # at each close, every finish before it
        started = np.zeros((senders, len(closes)), dtype=np.int64)
        for s, st in lane_starts:
            started[s] += np.searchsorted(st, times)
        finished = upto.sum(axis=2).T + np.array(finished_before)[:, None]
        failed_attempts = (upto[:, :, 1] + upto[:, :, 2]).T + np.array(fa_before)[:, None]
        in_flight = np.array(started_before)[:, None] + started - finished
        sent = sent_before + upto[:, :, 0].sum(axis=1)
        failed = failed_before + upto[:, :, 2].sum(axis=1)
        retried = retried_before + upto[:, :, 1].sum(axis=1)
        backlog = run.messages - sent - failed - in_flight.sum(axis=0)
        # Each bin's histogram of send times: one count over (bin, bucket) for the chunk.
        found_buckets = buckets_of(fd)  # (the open bin's too, counted in a last row left out)
        if self.open:
            opened = np.concatenate(self.open)
            interval = np.concatenate((np.zeros(len(opened), dtype=np.int64), interval))
            found_buckets = np.concatenate((buckets_of(opened), found_buckets))
        self.open = [fd[last]]
        low = int(found_buckets.min()) if len(found_buckets) else 0
        width = int(found_buckets.max()) - low + 1 if len(found_buckets) else 1  # the buckets in use
        found_counts = np.bincount(interval * width + (found_buckets - low), minlength=(len(closes) + 1) * width)
        found_counts = found_counts.reshape(len(closes) + 1, width)[:-1]
        finished_l, failed_attempts_l, in_flight_l = (
            finished.T.tolist(),
            failed_attempts.T.tolist(),
            in_flight.T.tolist(),
        )
        sent_l, failed_l, retried_l, backlog_l = sent.tolist(), failed.tolist(), retried.tolist(), backlog.tolist()
        where, keys = np.nonzero(found_counts)  # row by row, keys ascending (as np.unique gives them)
        found = found_counts[where, keys].tolist()
        cuts = np.searchsorted(where, np.arange(len(closes) + 1)).tolist()
        keys_l = (keys + low).tolist()
        for i, (_, t, now) in enumerate(closes):
            lo, hi = cuts[i], cuts[i + 1]
            timeline.add_bin(
                now,
                sent_l[i] - bins.sent,
                failed_l[i] - bins.failed,
                retried_l[i] - bins.retried,
                [f - c for f, c in zip(finished_l[i], bins.finished, strict=True)],
                [f - c for f, c in zip(failed_attempts_l[i], bins.failed_attempts, strict=True)],
                dict(zip(keys_l[lo:hi], found[lo:hi], strict=True)),
            )
            timeline.sample(now, backlog_l[i], in_flight_l[i])
            bins.sent, bins.failed, bins.retried = sent_l[i], failed_l[i], retried_l[i]
            bins.finished, bins.failed_attempts = finished_l[i], failed_attempts_l[i]
            bins.edge = (math.floor(t / timeline.width) + 1) * timeline.width
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
            run.times[g], run.fails[g] = lane.times.tolist(), lane.failed.tolist()
        if self.open:
            run.bins.ended.extend(np.concatenate(self.open).tolist())
        self.open = []
        if self.receipts is not None:
            self.receipts.hold_all()
