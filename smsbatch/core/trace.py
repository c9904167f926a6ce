"""--trace: one row per attempt, in simulated seconds, from either engine.

A row is (sender index, slot, attempt, start, end, outcome), and with
receipts modelled an accepted attempt's receipt time (the column is empty
when it never comes, or for any other outcome). Both engines
write the same rows for the same run: the virtual engine for every attempt it
steps, a real-time sender for every attempt it finishes (Progress.trace). The
file is sorted by (end, sender, slot), the order in which the model ends
attempts, so two traces of one model compare line for line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from smsbatch.core.model import EXPIRED, FAILED, INTERRUPTED, RETRY, SENT, THROTTLED

# (sender, slot, attempt, start, end, outcome code[, receipt]): with receipts modelled, an
# accepted attempt's row ends with its receipt's time (None: it never comes).
TraceRow = tuple[int, int, int, float, float, int] | tuple[int, int, int, float, float, int, float | None]

HEADER = "sender,slot,attempt,start_s,end_s,outcome,receipt_s"
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
    for row in in_order(rows):
        sender, slot, attempt, start, end, outcome = row[:6]
        receipt = row[6] if len(row) > 6 else None
        shown = "" if receipt is None else repr(receipt)
        lines.append(f"{names[sender]},{slot},{attempt},{start!r},{end!r},{OUTCOME_NAMES[outcome]},{shown}")
    return "\n".join(lines) + "\n"
