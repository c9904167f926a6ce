"""The retry schedule and the pending work: what the runner itself puts on the queue.

Retries wait here until their simulated time to re-enter the queue; then they
go in the pending work, behind every first attempt (the model's FIFO queue: all
first attempts are queued at time 0). PendingWork holds what the work sink had
no room for yet, in the model's order: first attempts given back, then
retries, then the Stops.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import NamedTuple

from smsbatch.core.model import ROUND, MessageBatch, Stop


class Retry(NamedTuple):
    back_at: float  # simulated time it is back in the queue (first: the heap's order)
    message_id: int
    phone: str
    attempt: int


class RetrySchedule:
    def __init__(self) -> None:
        self._heap: list[Retry] = []

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, message_id: int, phone: str, attempt: int, back_at: float) -> None:
        heapq.heappush(self._heap, Retry(back_at, message_id, phone, attempt))

    def next_at(self) -> float:
        """Simulated time of the next retry due (inf: none)."""
        return self._heap[0].back_at if self._heap else math.inf

    def last_at(self) -> float:
        return max((entry.back_at for entry in self._heap), default=0.0)

    def take_due(self, now: float, limit: int) -> list[Retry]:
        due: list[Retry] = []
        while self._heap and self._heap[0].back_at <= now and len(due) < limit:
            due.append(heapq.heappop(self._heap))
        return due


def is_first_attempts(item: object) -> bool:
    """First attempts, counting those that went round without a retry (throttled, interrupted)."""
    return isinstance(item, MessageBatch) and (item.attempts is None or max(a % ROUND for a in item.attempts) == 1)


class PendingWork:
    """Work waiting for room in the sink, in the model's order."""

    def __init__(self) -> None:
        self.items: list[MessageBatch | Stop] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: MessageBatch | Stop) -> None:
        if is_first_attempts(item):  # given back: ahead of retries and stops, as in the model's queue
            first_later = next((i for i, queued in enumerate(self.items) if not is_first_attempts(queued)), len(self))
            self.items.insert(first_later, item)
        else:
            self.items.append(item)

    def flush(self, offer: Callable[[MessageBatch | Stop], bool]) -> None:
        """Offer in order until the sink is full; the rest waits for the next flush."""
        while self.items and offer(self.items[0]):
            self.items.pop(0)

    def retries(self) -> int:
        return sum(len(item) for item in self.items if isinstance(item, MessageBatch) and not is_first_attempts(item))

    def clear(self) -> None:
        self.items.clear()
