"""When the sent count reached each share of the messages: the planner's figure.

Virtual time knows it exactly (its events come in time order). In real time
successful sends are reported out of order across senders, so they go into
a histogram of simulated time with a fixed number of bins, which doubles its
bin width whenever a send lands past its end: memory stays flat whatever the
run's size, and a reach time is off by at most one bin (1/2048 of the run).
"""

from __future__ import annotations

REACH_PERCENTS = (50, 90, 99, 100)
BINS = 2048


def reach_counts(messages: int) -> dict[str, int]:
    """The sent count that reaches each share: ceil(p x messages), in integers."""
    return {str(p): -(-messages * p // 100) for p in REACH_PERCENTS}


class SentHistogram:
    def __init__(self, width: float = 1e-6) -> None:
        self.width = width  # simulated seconds per bin; doubles as needed
        self.counts = [0] * BINS
        self.last = 0.0  # the latest time added: the 100% figure, exactly

    def add(self, at: float, count: int = 1) -> None:
        if at > self.last:
            self.last = at
        index = int(at / self.width)
        while index >= BINS:
            self._coarsen()
            index = int(at / self.width)
        self.counts[index] += count

    def _coarsen(self) -> None:
        counts = self.counts
        self.counts = [counts[i] + counts[i + 1] for i in range(0, BINS, 2)] + [0] * (BINS // 2)
        self.width *= 2

    def time_of(self, count: int) -> float | None:
        """The simulated time the cumulative count reached `count` (linear within a bin)."""
        seen = 0
        for index, in_bin in enumerate(self.counts):
            if in_bin and seen + in_bin >= count:
                return min(self.last, (index + (count - seen) / in_bin) * self.width)
            seen += in_bin
        return None

    def reach(self, messages: int) -> dict[str, float | None]:
        return {p: self.time_of(count) for p, count in reach_counts(messages).items()}
