"""Virtual time (`--speed max`): the model as a discrete-event simulation.

No process, no queue, no waiting: one heap of events in simulated time, as
SimPy keeps it. The model (README, "The model"):

- every message is in one FIFO queue at time 0; a failed attempt with retries
  left re-enters the back of it at fail time + its retry delay;
- a sender has `window` slots; a slot takes a message only when it can start
  it at once, and a sender's starts are at least 1/rate apart (a slot waiting
  for the cap holds nothing);
- at equal times: finished sends first, then retries entering the queue, then
  free slots taking work in order of (sender index, slot).

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
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from smsbatch.core.reach import reach_counts
from smsbatch.core.sender_model import BLOCK, SenderModel
from smsbatch.core.stats import Stats, buckets_of
from smsbatch.core.timeline import Timeline

FINISH, ARRIVE, START = 0, 1, 2
CHUNK = 8192  # events between looks at the clock (display) and at signals


@dataclass
class Progress:
    """Where the simulation is: plain numbers for the monitor."""

    now: float = 0.0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    stats: list[Stats] = field(default_factory=list)


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


class _Blocks:
    """One sender's pre-drawn attempts: Python lists for the loop, arrays for the stats."""

    def __init__(self, model: SenderModel) -> None:
        self.model = model
        self.stats = Stats()
        self.drawn = 0  # attempts drawn, whole blocks
        self.times = np.empty(0)
        self.failed = np.empty(0, dtype=bool)

    def refill(self) -> tuple[list[float], list[bool]]:
        """Fold the used-up block into the stats, draw the next."""
        self.stats.record_block(self.times, self.failed)
        self.drawn += BLOCK
        self.times, self.failed = self.model.block(BLOCK)
        return self.times.tolist(), self.failed.tolist()

    def started(self, used: int) -> int:
        """Attempts started so far, `used` of them from the current block."""
        return self.drawn - BLOCK + used if self.drawn else 0

    def stats_with(self, used: int) -> Stats:
        """Stats of every attempt started so far (the current block up to `used`)."""
        stats = Stats().merge(self.stats)
        stats.record_block(self.times[:used], self.failed[:used])
        return stats


def _histogram(seconds: list[float]) -> dict[int, int]:
    if not seconds:
        return {}
    buckets, counts = np.unique(buckets_of(np.array(seconds)), return_counts=True)
    return dict(zip(buckets.tolist(), counts.tolist(), strict=False))


class VirtualEngine:
    def __init__(
        self, models: Sequence[SenderModel], messages: int, timeline: Timeline | None = None, deadline: float = math.inf
    ) -> None:
        self.models = list(models)
        self.messages = messages
        self.blocks = [_Blocks(model) for model in self.models]
        self.progress = Progress(stats=[b.stats for b in self.blocks])
        self.timeline = timeline
        self.deadline = deadline

    def run(self, tick: Callable[[Progress], bool] | None = None) -> Outcome:
        """Simulate to the end. `tick(progress)` is called every CHUNK events;
        it returns False to stop the run where it is (Ctrl-C)."""
        models, blocks = self.models, self.blocks
        heap: list[tuple] = []
        heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace
        sender_of: list[int] = []
        first_slot: list[int] = []
        for s, model in enumerate(models):
            first_slot.append(len(sender_of))
            sender_of.extend([s] * model.window)
        gap = [m.start_gap for m in models]
        next_start = [0.0] * len(models)
        pending_cap = [False] * len(models)  # a START event is waiting for this sender's cap
        capped: list[list[tuple[int, float]]] = [[] for _ in models]  # (slot, free since) waiting for the cap
        capped_time = [0.0] * len(models)
        times: list[list[float]] = [[] for _ in models]
        fails: list[list[bool]] = [[] for _ in models]
        used = [0] * len(models)
        first_end = [math.inf] * len(models)
        last_end = [-math.inf] * len(models)
        idle: list[int] = []  # heap of slots with nothing to do
        waiting: deque[int] = deque()  # retry attempts in the queue, after the first attempts
        fresh = self.messages  # first attempts still in the queue
        max_retries = models[0].max_retries if models else 0
        reach_at = sorted(set(reach_counts(self.messages).values()))
        reach_time: dict[int, float] = {}
        next_reach = reach_at.pop(0)
        sent = failed = retried = seq = 0
        now = 0.0
        deadline, by_deadline = self.deadline, 0
        pending = 0  # retries waiting to re-enter the queue
        finished = [0] * len(models)  # attempts ended, per sender
        failed_attempts = [0] * len(models)
        ended: list[float] = []  # send times of the attempts ended in the current bin
        closed = {
            "sent": 0,
            "failed": 0,
            "retried": 0,
            "finished": [0] * len(models),
            "failed_attempts": [0] * len(models),
        }
        timeline = self.timeline
        edge = timeline.width if timeline else math.inf

        def close_bin(t_in_bin: float, t_next: float) -> float:
            """Hand the counts of the bin holding t_in_bin to the timeline; the next bin's end."""
            assert timeline is not None
            timeline.add_bin(
                t_in_bin,
                sent - closed["sent"],
                failed - closed["failed"],
                retried - closed["retried"],
                [f - c for f, c in zip(finished, closed["finished"], strict=False)],
                [f - c for f, c in zip(failed_attempts, closed["failed_attempts"], strict=False)],
                _histogram(ended),
            )
            in_flight = [b.started(n) - f for b, n, f in zip(blocks, used, finished, strict=False)]
            timeline.sample(t_in_bin, fresh + len(waiting) + pending, in_flight)
            closed.update(
                sent=sent,
                failed=failed,
                retried=retried,
                finished=list(finished),
                failed_attempts=list(failed_attempts),
            )
            ended.clear()
            return (math.floor(t_next / timeline.width) + 1) * timeline.width

        def next_attempt(s: int) -> tuple[int, float, bool]:
            """The message at the head of the queue (its attempt number), and sender
            s's next draw: (attempt, send time, failed?)."""
            nonlocal fresh
            if fresh:
                fresh -= 1
                attempt = 1
            else:
                attempt = waiting.popleft()
            i = used[s]
            if i == len(times[s]):
                times[s], fails[s] = blocks[s].refill()
                i = 0
            used[s] = i + 1
            return attempt, times[s][i], fails[s][i]

        def start(g: int, s: int, t: float) -> None:
            """Slot g of sender s starts the message at the head of the queue at t."""
            attempt, seconds, failed_draw = next_attempt(s)
            next_start[s] = t + gap[s]
            due = t + seconds
            if due < first_end[s]:
                first_end[s] = due
            heappush(heap, (due, FINISH, g, attempt if failed_draw else 0, seconds))

        def free(g: int, s: int, t: float) -> None:
            """Slot g is free at t and cannot start at once: wait for work or the cap."""
            if gap[s]:
                heappush(capped[s], (g, t))
                if not pending_cap[s]:
                    pending_cap[s] = True
                    heappush(heap, (max(t, next_start[s]), START, first_slot[s], 0, 0.0))
            elif fresh or waiting:
                heappush(heap, (t, START, g, 0, 0.0))  # after the other events at t
            else:
                heappush(idle, g)
                last_end[s] = max(last_end[s], t)

        def wake_one(t: float) -> None:
            """A message entered the queue at t: the first idle slot (by sender, slot)
            that can start it at t is told; idle slots of a sender whose rate cap
            is closed until later wait for it instead (they take work then, if any)."""
            while idle:
                g = heappop(idle)
                s = sender_of[g]
                free(g, s, t)
                if not gap[s] or next_start[s] <= t:
                    return

        for s in range(len(models)):
            for g in range(first_slot[s], first_slot[s] + models[s].window):
                free(g, s, 0.0)

        while heap:
            for _ in range(CHUNK):
                if not heap:
                    break
                t, kind, key, attempt, seconds = heap[0]
                if kind == FINISH:
                    if t >= edge:
                        edge = close_bin(now, t)
                    now = t
                    s = sender_of[key]
                    if gap[s]:  # a capped sender may go idle at its cap, not at a finish
                        last_end[s] = t
                    ended.append(seconds)
                    finished[s] += 1
                    if not attempt:
                        sent += 1
                        if t <= deadline:
                            by_deadline += 1
                        if sent == next_reach:
                            reach_time[sent] = t
                            next_reach = reach_at.pop(0) if reach_at else -1
                    elif attempt <= max_retries:
                        failed_attempts[s] += 1
                        retried += 1
                        seq += 1
                        pending += 1
                        heapreplace(heap, (t + models[s].retry_delay(attempt), ARRIVE, seq, attempt + 1, 0.0))
                        free(key, s, t)
                        continue
                    else:
                        failed_attempts[s] += 1
                        failed += 1
                    # The fast path: the slot goes on at once, if nothing else happens at t.
                    if (
                        (fresh or waiting)
                        and not gap[s]
                        and (len(heap) < 2 or heap[1][0] > t)
                        and (len(heap) < 3 or heap[2][0] > t)
                    ):
                        attempt, seconds, failed_draw = next_attempt(s)
                        heapreplace(heap, (t + seconds, FINISH, key, attempt if failed_draw else 0, seconds))
                    else:
                        heappop(heap)
                        free(key, s, t)
                elif kind == ARRIVE:
                    heappop(heap)
                    pending -= 1
                    waiting.append(attempt)
                    wake_one(t)
                else:
                    heappop(heap)
                    s = sender_of[key]
                    if gap[s]:
                        pending_cap[s] = False
                        g, free_since = heappop(capped[s])
                        if fresh or waiting:
                            capped_time[s] += t - free_since
                            start(g, s, t)
                            if capped[s]:
                                pending_cap[s] = True
                                heappush(heap, (next_start[s], START, first_slot[s], 0, 0.0))
                        else:
                            for slot, _ in [(g, free_since), *capped[s]]:
                                heappush(idle, slot)
                            capped[s].clear()
                    elif fresh or waiting:
                        start(key, s, t)
                    else:
                        heappush(idle, key)
                        last_end[s] = max(last_end[s], t)
            self.progress.now, self.progress.sent, self.progress.failed = now, sent, failed
            self.progress.retried = retried
            if tick is not None and heap and not tick(self.progress):
                break
        interrupted = bool(heap)
        if timeline is not None:
            close_bin(now, now)
        stats = self._final_stats(used, heap, first_end, last_end)
        reach = {p: reach_time.get(count) for p, count in reach_counts(self.messages).items()}
        return Outcome(sent, failed, retried, now, reach, stats, interrupted, by_deadline, capped_time)

    def _final_stats(self, used, heap, first_end, last_end) -> list[Stats]:
        stats = [b.stats_with(n) for b, n in zip(self.blocks, used, strict=False)]
        for event in heap:  # interrupted: attempts in flight did not finish
            if event[1] == FINISH:
                stats[self._sender_of_slot(event[2])].forget(event[4], event[3] == 0)
        for s, st in enumerate(stats):
            st.first_end, st.last_end = first_end[s], last_end[s]
        return stats

    def _sender_of_slot(self, slot: int) -> int:
        for s, model in enumerate(self.models):
            if slot < model.window:
                return s
            slot -= model.window
        raise ValueError(slot)
