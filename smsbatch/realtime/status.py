"""How a run ends: its result, its exit status, and the signals that stop it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from types import FrameType
from typing import TYPE_CHECKING

from smsbatch.present.monitor import Snapshot

if TYPE_CHECKING:
    from smsbatch.realtime.runner import Runner


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


def exit_status(runner: Runner) -> ExitStatus:
    if runner.internal_error:
        return ExitStatus.UNSENT
    if runner.signals:
        return ExitStatus.INTERRUPTED if runner.signals[0] == signal.SIGINT else ExitStatus.TERMINATED
    return ExitStatus.UNSENT if runner.accounts.ledger.unsent else ExitStatus.OK


@contextmanager
def stop_signals_caught(restore: bool = True, received: list[int] | None = None) -> Iterator[list[int]]:
    """SIGINT and SIGTERM are noted in the list yielded (`received`, if given:
    the signals noted before, from the process's first line), until the block
    ends (or, with restore=False, until the process exits).

    Held for the whole of main(), summary included: a second Ctrl-C that
    comes while the summary is written, or as the process exits, must not
    kill it mid-write or print a KeyboardInterrupt traceback.
    """
    received = [] if received is None else received

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        if restore:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
