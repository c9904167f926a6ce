"""The signals that stop a run."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stop_signals_caught(
    restore: bool = True, received: list[int] | None = None, which: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[list[int]]:
    """SIGINT and SIGTERM (`which`) are noted in the list yielded (`received`,
    if given: the signals noted before, from the process's first line), until
    the block ends (or, with restore=False, until the process exits).

    Held for the whole of main(), summary included: a second Ctrl-C that
    comes while the summary is written, or as the process exits, must not
    kill it mid-write or print a KeyboardInterrupt traceback.
    """
    received = [] if received is None else received

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in which}
    try:
        yield received
    finally:
        if restore:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
