"""A real-time sender's window: its free slots, its sends in flight, its rate cap.

All times are simulated seconds. A free slot is the time it became free (a
send starts no earlier than that); a send in flight is due at its start plus
its drawn send time; the rate cap is the earliest start of the next send.
"""

from __future__ import annotations

import heapq

from smsbatch.core.model import MessageBatch

# (due, seq, batch, offset, seconds, outcome): seq keeps equal due times in start order.
InFlight = tuple[float, int, MessageBatch, int, float, int]


class Slots:
    def __init__(self, window: int, start_gap: float) -> None:
        self.free: list[float] = [0.0] * window  # heap: simulated time each free slot became free
        self.in_flight: list[InFlight] = []  # heap by due time
        self.start_gap = start_gap  # simulated seconds between starts; 0.0: no rate cap
        self.next_start = 0.0  # rate cap: earliest simulated start of the next send
        self.seq = 0

    def startable_by(self, horizon: float) -> int:
        """Free slots that can start a message by the simulated time `horizon`:
        a slot waiting for the rate cap holds nothing, as in the model."""
        if not self.start_gap:
            return len(self.free)
        if self.next_start > horizon:
            return 0
        return min(len(self.free), 1 + int((horizon - self.next_start) / self.start_gap))

    def earliest_start(self, now: float) -> float:
        """The simulated time a message taken now would start, were nothing waiting before it."""
        start = self.free[0] if self.free else (self.in_flight[0][0] if self.in_flight else now)
        return max(start, self.next_start) if self.start_gap else start

    def capped_start(self, ready: float) -> float:
        """A send ready at `ready` starts when the rate cap lets it; the next one gap later."""
        start = max(ready, self.next_start)
        self.next_start = start + self.start_gap
        return start

    def launch(self, due: float, batch: MessageBatch, offset: int, seconds: float, outcome: int) -> None:
        self.seq += 1
        heapq.heappush(self.in_flight, (due, self.seq, batch, offset, seconds, outcome))

    def next_free(self) -> float:
        return heapq.heappop(self.free)

    def release(self, free_since: float) -> None:
        heapq.heappush(self.free, free_since)

    def next_due(self) -> float:
        """The due time of the earliest send in flight (call only when there is one)."""
        return self.in_flight[0][0]
