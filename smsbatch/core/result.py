"""How a run ended, in either mode: its exit status and its result."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from smsbatch.core.snapshot import Snapshot
from smsbatch.core.trace import TraceRow


class ExitStatus(IntEnum):
    OK = 0  # every message sent or failed
    UNSENT = 1  # some messages never got a final answer
    USAGE = 2  # bad input; nothing started
    DEADLINE_MISSED = 3  # --require-deadline, and the deadline was missed
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


@dataclass
class RunResult:
    snapshot: Snapshot
    exit_status: ExitStatus
    stopped_by: str
    produced: int | None
    startup: float  # real seconds to start every child
    run_id: str | None = None  # the broker's run, when there is one
    trace: list[TraceRow] | None = None  # --trace: a row per attempt


def exit_status(signals: Sequence[int], unsent: int, internal_error: bool = False) -> ExitStatus:
    """A run's status: an error of ours, then the first stop signal, then whether any message is unsent."""
    if internal_error:
        return ExitStatus.UNSENT
    if signals:
        return ExitStatus.INTERRUPTED if signals[0] == signal.SIGINT else ExitStatus.TERMINATED
    return ExitStatus.UNSENT if unsent else ExitStatus.OK
