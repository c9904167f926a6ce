"""Delivery receipts, counted in the order they come (docs/model.md).

An accepted message's receipt comes a drawn delay after its acceptance and
says delivered or undeliverable, or it never comes. ReceiptCount takes the
receipts as the senders' accepted messages make them, in any order, and
counts each when simulated time reaches it: the delivered count's reach
times, and how many were delivered by the deadline. Both engines feed it the
same receipts (the same draws per sender, in acceptance order), so both give
the same figures. It holds only the receipts not yet due, so the virtual
engine, which counts as it goes, stays flat in memory.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smsbatch.core.reach import reach_counts
from smsbatch.core.timeline import Timeline

if TYPE_CHECKING:
    import numpy as np

# What a receipt says (Progress.receipts, one byte each).
DELIVERED = 1
UNDELIVERABLE = 2
NO_RECEIPT = 3  # it never comes
EXPIRED_RECEIPT = 4  # would have said delivered after --validity: says expired, then


@dataclass(frozen=True)
class ReceiptFigures:
    delivered: int = 0
    undeliverable: int = 0
    no_receipt: int = 0
    pending: int = 0  # due after the run was stopped
    reach: dict[str, float | None] = field(default_factory=dict)  # percent of all messages -> when delivered
    by_deadline: int = 0  # delivered by the deadline
    expired: int = 0  # would have said delivered, but after --validity


class ReceiptCount:
    def __init__(
        self, messages: int, deadline: float, validity: float = math.inf, timeline: Timeline | None = None
    ) -> None:
        self.messages = messages
        self.deadline = deadline
        self.timeline = timeline  # gets each delivery at its time
        if timeline is not None:
            timeline.receipts = True
        self.validity = validity  # a delivery due after it reads expired
        self.expired = 0
        self.due: list[tuple[float, int]] = []  # heap of (time, DELIVERED or UNDELIVERABLE)
        self.delivered = self.undeliverable = self.no_receipt = self.by_deadline = 0
        self.reach_at = sorted(set(reach_counts(messages).values()))
        self.reach_time: dict[int, float] = {}
        # Receipts added a block at a time (add_many), not yet due: (times, kinds), unordered.
        self.held: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, time: float, kind: int) -> None:
        """A receipt that comes at `time` (or, NO_RECEIPT, never)."""
        if kind == NO_RECEIPT:
            self.no_receipt += 1
        elif kind == DELIVERED and time > self.validity:
            heapq.heappush(self.due, (self.validity, EXPIRED_RECEIPT))  # the gateway gives up at the validity's end
        else:
            heapq.heappush(self.due, (time, kind))

    def advance(self, now: float) -> None:
        """Count every receipt due by `now`, in time order."""
        due = self.due
        while due and due[0][0] <= now:
            time, kind = heapq.heappop(due)
            if kind == UNDELIVERABLE:
                self.undeliverable += 1
                continue
            if kind == EXPIRED_RECEIPT:
                self.expired += 1
                continue
            self.delivered += 1
            if self.timeline is not None:
                self.timeline.add_count("delivered", time)
            if time <= self.deadline:
                self.by_deadline += 1
            if self.reach_at and self.delivered == self.reach_at[0]:
                self.reach_time[self.reach_at.pop(0)] = time

    def add_many(self, times: np.ndarray, kinds: np.ndarray) -> None:
        """add() for a block of receipts (virtual time's fast path), held as arrays."""
        import numpy as np

        self.no_receipt += int(np.count_nonzero(kinds == NO_RECEIPT))
        keep = kinds != NO_RECEIPT
        times, kinds = times[keep], kinds[keep]
        late = (kinds == DELIVERED) & (times > self.validity)
        if late.any():
            times = np.where(late, self.validity, times)
            kinds = np.where(late, EXPIRED_RECEIPT, kinds)
        if self.held is not None:
            times, kinds = np.concatenate((self.held[0], times)), np.concatenate((self.held[1], kinds))
        self.held = (times, kinds)

    def advance_many(self, now: float) -> None:
        """advance() for the held receipts: what advance(now) would count, the same
        figures (a count is the same in any order; a reach time is the k-th
        delivery's time, whatever came first at that time)."""
        import numpy as np

        if self.held is None:
            return
        times, kinds = self.held
        due = times <= now
        if not due.any():
            return
        self.held = (times[~due], kinds[~due])
        times, kinds = times[due], kinds[due]
        self.undeliverable += int(np.count_nonzero(kinds == UNDELIVERABLE))
        self.expired += int(np.count_nonzero(kinds == EXPIRED_RECEIPT))
        delivered = times[kinds == DELIVERED]  # (in no order: counts, and ranks found without a sort)
        if not len(delivered):
            return
        before = self.delivered
        self.delivered += len(delivered)
        self.by_deadline += int(np.count_nonzero(delivered <= self.deadline))
        reached = []
        while self.reach_at and self.reach_at[0] <= self.delivered:
            reached.append(self.reach_at.pop(0))
        if reached:
            ranks = [count - before - 1 for count in reached]
            ranked = np.partition(delivered, ranks)
            for count, rank in zip(reached, ranks, strict=True):
                self.reach_time[count] = float(ranked[rank])
        timeline = self.timeline
        if timeline is not None:
            timeline.bin_of(float(delivered.max()))  # first: it may coarsen (then every index is the coarser one)
            bins = (np.maximum(delivered, 0.0) / timeline.width).astype(np.int64)
            low = int(bins.min())
            counts = np.bincount(bins - low)
            series = timeline.counts["delivered"]
            for b, n in zip((np.flatnonzero(counts) + low).tolist(), counts[counts > 0].tolist(), strict=True):
                series[b] += n

    def take_heap(self) -> None:
        """The heap's receipts into the held arrays (the fast path takes over from the event loop)."""
        import numpy as np

        if self.due:
            times = np.array([time for time, _ in self.due])
            kinds = np.array([kind for _, kind in self.due], dtype=np.int64)
            self.due.clear()
            if self.held is not None:
                times, kinds = np.concatenate((self.held[0], times)), np.concatenate((self.held[1], kinds))
            self.held = (times, kinds)

    def hold_all(self) -> None:
        """The held receipts into the heap that add() and advance() keep (the event loop takes over)."""
        if self.held is not None:
            self.due.extend(zip(self.held[0].tolist(), self.held[1].tolist(), strict=True))
            heapq.heapify(self.due)
            self.held = None

    def figures(self, stopped_at: float | None = None) -> ReceiptFigures:
        """The figures: every receipt counted (a run that ended by itself), or
        those due by `stopped_at` (a run stopped there), the rest pending."""
        self.advance(math.inf if stopped_at is None else stopped_at)
        reach = {percent: self.reach_time.get(count) for percent, count in reach_counts(self.messages).items()}
        return ReceiptFigures(
            self.delivered, self.undeliverable, self.no_receipt, len(self.due), reach, self.by_deadline, self.expired
        )
