"""A lane's draws as the fast path of virtual time reads them (virtual/fast.py
and virtual/capped.py): rows looked at ahead without taking them, rows taken,
and the one sort both use."""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np


class Lane(Protocol):
    """A lane's pre-drawn attempts (engine._Lane)."""

    times: np.ndarray
    failed: np.ndarray
    ahead: deque[tuple[np.ndarray, np.ndarray]]

    def draw(self) -> tuple[np.ndarray, np.ndarray]: ...

    def next_block(self) -> None: ...

    def known_buckets(self, row: int, buckets: np.ndarray) -> None: ...

    def lists_at(self, row: int) -> tuple[list[float], list[bool]]: ...


def peek(lane: Lane, row: int, count: int) -> tuple[np.ndarray, np.ndarray]:
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


def order_of(primary: np.ndarray, secondary: np.ndarray | None = None) -> np.ndarray:
    """np.lexsort((secondary, primary)), or np.argsort(primary, kind="stable"):
    by numpy's stable sort (a merge of runs: the fast path's arrays are lanes'
    rows concatenated, each in time order, and so it beats its quicksort
    here), and by lexsort only where `primary` has ties a secondary orders."""
    order = np.argsort(primary, kind="stable")
    if secondary is None:
        return order
    ranked = primary[order]
    if len(ranked) > 1 and (ranked[1:] == ranked[:-1]).any():
        return np.lexsort((secondary, primary))
    return order


def consume(lane: Lane, used: int, count: int) -> int:
    """Take `count` rows from `used` on; the new `used`. A block passed is folded (as the loop's refill does)."""
    while used + count > len(lane.times):
        count -= len(lane.times) - used
        lane.next_block()
        used = 0
    return used + count
