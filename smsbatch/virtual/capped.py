"""The fast path's capped senders (virtual/fast.py): a sender a rate caps, or
the senders of one account, their starts at the cap's ticks as the loop's
_CapGate makes them, a stretch of simulated time at a time.

A sender alone is one lane: while a slot is free at each tick its starts
are the ticks (a cumulative sum of the gap), and its free slots take them in
the order they went free, so the r-th tick takes the r-th free time of all:
one sort (Capped._in_turn). The senders of an account take its ticks in
turn (the lowest with a free slot), each from its own lane: which of them
starts goes start by start, on when each member has a slot free
(Capped._stepped), and which slot of its sender each start takes then
follows from one sort again.
Equal free times, which only the slots' numbers order, go start by start
(turns_one_by_one)."""

from __future__ import annotations

import math
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any, NamedTuple

import numpy as np

from smsbatch.virtual.lanes import Lane, order_of, peek

SEGMENT_TICKS = 8192  # a capped sender's ticks looked at, at most, at a time


class Member:
    """A sender of a capped lane group: its slots, its lane, its own cap's gap."""

    __slots__ = ("first_slot", "g", "lane", "own_gap", "s", "window")

    def __init__(self, s: int, first_slot: int, window: int, g: int, lane: Lane, own_gap: float) -> None:
        self.s, self.first_slot, self.window, self.g, self.lane, self.own_gap = s, first_slot, window, g, lane, own_gap


class Capped:
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
        "ticks",
        "window",
    )

    def __init__(self, members: list[Member], gap: float) -> None:
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
        # The ticks a segment looks at: doubles while segments pay, kept from chunk to chunk (and through a
        # chunk redone: only how far a segment looks, never what it finds).
        self.ticks = 256

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

    def step(self, t1: float, used: list[int]) -> Step:
        """Its events before t1, from the lanes' rows `used` on: a Step. Long
        stretches where the cap binds go a segment at a time (_segment); where it
        keeps letting go (every slot busy at a tick), start by start (_stepped)."""
        step = Step(len(self.members))
        slow_until = -math.inf
        ticks, slow = self.ticks, 256  # a segment's ticks, a slow stretch's: each doubles while it pays
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
        self.ticks = ticks
        return step

    def _stepped(self, t_stop: float, rows: list[int], step: Step) -> None:
        """The gate's events before t_stop one by one, as the loop has them, in
        two passes: the cap opens with a slot free (a finish frees one before a
        start at the same time): the lowest member with one starts, the next
        start a gap later; with none free, at the next finish. That needs only
        when each member's slots are free, a heap of them per member (a free
        one's -inf, a busy one's end), so a finish is no event of its own;
        which slot of its member each start takes (the one that went free
        first) then follows for each member at once (_in_turn), as in _segment."""
        if self.due is not None:
            opens = self.due
        else:
            opens = max(self.inflight[0][0], self.next_start) if self.inflight else math.inf
        need = int(max(0.0, t_stop - opens) / self.gap) + 3 if opens < t_stop else 0  # the most that can start
        members, index_of, member_of = self.members, self.index_of, self.member_of
        draws = [
            peek(m.lane, row, need) if need else (np.empty(0), np.empty(0, dtype=bool))
            for m, row in zip(members, rows, strict=True)
        ]
        times = [seconds.tolist() for seconds, _ in draws]
        # Each member's slots by when they are free: a member has one free at t while its first is at or before t.
        ends: list[list[float]] = [[] for _ in members]
        for _, slot, _ in self.held:
            ends[member_of[index_of[slot]]].append(-math.inf)
        for end, slot, *_ in self.inflight:
            ends[member_of[index_of[slot]]].append(end)
        for heap in ends:
            heapify(heap)
        next_start, gap = self.next_start, self.gap
        began: list[list[float]] = [[] for _ in members]  # each member's starts
        # The lowest member first: its heap, its next send time (its lane's rows in turn), where its starts go.
        lowest = [
            (heap, iter(seconds).__next__, own.append) for heap, seconds, own in zip(ends, times, began, strict=True)
        ]
        # t: when the cap opens next. A start at t (by the lowest member with a slot free then) opens it
        # again a gap later; if no slot is free then, at the first finish: as the gate, which waits for a
        # finish when no slot is free at a start, and starts at max(finish, next start) after it.
        if self.due is not None:
            t = self.due
        else:
            t = min([heap[0] for heap in ends])
            t = t if t >= next_start else next_start
        while t < t_stop:
            for heap, draw, took in lowest:
                if heap[0] <= t:
                    heapreplace(heap, t + draw())
                    took(t)
                    t += gap
                    break
            else:  # every slot busy at t: the first finish opens it
                t = min([heap[0] for heap in ends])
        counts = [len(own) for own in began]
        started = any(counts)
        if started:
            next_start = max(own[-1] for own in began if own) + gap  # (a gap after the last start)
        # A START waiting at the start that nothing took waits on: it is at or after t_stop, as a START
        # waits only with a slot free (the gate's rule, and _take_over's), and a free slot would have taken it.
        due = self.due
        if started or due is None:  # the START waiting at t_stop: at t, once a slot went free before it
            due = t if min([heap[0] for heap in ends]) < t_stop else None
        starts = np.concatenate([np.array(own) for own in began])
        owners = np.repeat(np.arange(len(members)), counts)
        if len(members) > 1:  # the group's starts in time order (each a gap or more after the one before)
            order = np.argsort(starts, kind="stable")
            starts, owners = starts[order], owners[order]
        turns: list[Turns] = []
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
    ) -> Turns:
        """Member m's starts `at` (rows `rows_of`, draws `seconds`, `failed`),
        or with `ticks` (`at` then the cap's ticks before t_stop, `ticks` them
        and the next), as many of them as a slot is free for: the slot each
        takes, its free slots in turn (the r-th start takes the r-th free time
        of its slots at the start and of its own ends: one sort, and pointer
        doubling to name each start's slot; where free times are equal (the
        slots' numbers order them), start by start (turns_one_by_one)."""
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
        order = order_of(free_at)
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
            src, own = turns_one_by_one(first, end0[first], at, e, ticks is not None)
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
            finished = np.vstack(  # a row each: (ends, seconds, failed, slots, rows)
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
        return Turns(n, until, capped, finished, held, inflight, first_end, last_start)

    def _segment(self, t1: float, rows: list[int], step: Step) -> tuple[int, bool]:
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
        seconds, failed = peek(self.members[0].lane, rows[0], count)
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

    def _took(self, turns: list[Turns], step: Step) -> None:
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


def turns_one_by_one(
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


class Turns(NamedTuple):
    """A member's starts in turn (Capped._in_turn): how many, until when, its
    capped time then, its finishes (as Step keeps them, or None), its free
    slots and attempts in flight at `until`, the first end of its starts."""

    started: int
    until: float
    capped: float
    finished: np.ndarray | None
    held: list[tuple[float, int, float]]
    inflight: list[Any]
    first_end: float
    last_start: float


class Step:
    """A capped group's events in a chunk: its starts (times, and which member
    started each), its finishes as arrays of five rows (end, seconds, failed, slot, row),
    and per member the first end of an attempt started and the rows drawn."""

    __slots__ = ("drawn", "finishes", "first_end", "owners", "starts")

    def __init__(self, members: int) -> None:
        self.starts: list[np.ndarray] = []
        self.owners: list[np.ndarray] = []
        self.finishes: list[np.ndarray] = []
        self.first_end = [math.inf] * members
        self.drawn = [0] * members
