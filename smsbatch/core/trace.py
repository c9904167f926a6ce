"""--trace: one row per attempt, in simulated seconds, from either engine.

A row is (sender index, slot, attempt, start, end, outcome). Both engines
write the same rows for the same run: the virtual engine for every attempt it
steps, a real-time sender for every attempt it finishes (Progress.trace). The
file is sorted by (end, sender, slot), the order in which the model ends
attempts, so two traces of one model compare line for line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from smsbatch.core.model import EXPIRED, FAILED, INTERRUPTED, RETRY, SENT, THROTTLED

TraceRow = tuple[int, int, int, float, float, int]  # (sender, slot, attempt, start, end, outcome code)

HEADER = "sender,slot,attempt,start_s,end_s,outcome"
OUTCOME_NAMES = {
    SENT: "sent",
    FAILED: "failed",
    RETRY: "retry",
    THROTTLED: "throttled",  # the gateway's answer: back to the front of the queue, no retry used
    INTERRUPTED: "interrupted",  # its sender went down mid-send (end_s: when): back to the front
    EXPIRED: "expired",  # it ended after --validity (throttled, or failed with retries left): the message expired
}


def in_order(rows: Iterable[TraceRow]) -> list[TraceRow]:
    """The rows as the model ends them: by end time, then sender, then slot."""
    return sorted(rows, key=lambda row: (row[4], row[0], row[1]))


def trace_csv(rows: Iterable[TraceRow], names: Sequence[str]) -> str:
    """The CSV text. Times are written with repr, so they read back to the bit."""
    lines = [HEADER]
    for sender, slot, attempt, start, end, outcome in in_order(rows):
        lines.append(f"{names[sender]},{slot},{attempt},{start!r},{end!r},{OUTCOME_NAMES[outcome]}")
    return "\n".join(lines) + "\n"
