"""What every child process does first, and how it reports a crash."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext
from types import FrameType

from setproctitle import setproctitle

from smsbatch.core.model import ChildFailed

_PR_SET_PDEATHSIG = 1


_terminate_requested = False


def enter_child(title: str, parent_pid: int) -> None:
    """Name the process, leave Ctrl-C to the main process, die with the parent."""
    # The terminal sends Ctrl-C to the whole process group: the main process
    # turns it into a warm stop, so children must not die of it on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM to a child (or to the whole group) asks it to leave warmly:
    # finish what is in hand, give back the rest, report, exit.
    signal.signal(signal.SIGTERM, _request_termination)
    setproctitle(title)
    die_with_parent(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL when the parent dies, whatever kills it (PR_SET_PDEATHSIG), or exit now if it is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: parent_alive() polling still catches it
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class StopSignal:
    """A warm-stop flag that every process can test and sleep on.

    A byte in a pipe: setting it wakes every sleeper, and no process can die
    holding anything that blocks the others (a multiprocessing.Event can: its
    set() waits for every sleeper to wake, and a killed sleeper never does).
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already set many times over
            os.write(self._write, b"!")

    def is_set(self) -> bool:
        return self.wait(0.0)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less if the flag is set; True if set."""
        while True:
            try:
                return bool(select.select([self._read], [], [], timeout)[0])
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


class RunStart:
    """Simulated time 0, shared by every process of a run: the runner sets it
    once every child is ready (start-up is not simulated time), and senders
    wait for it. A monotonic time in a shared double, and a pipe to wake the
    waiters (CLOCK_MONOTONIC is the same clock in every process of a machine)."""

    def __init__(self, ctx: ForkContext) -> None:
        self._value = ctx.RawValue("d", 0.0)
        self._flag = StopSignal()

    def set(self, monotonic_time: float) -> None:
        self._value.value = monotonic_time
        self._flag.set()

    @property
    def value(self) -> float:
        value: float = self._value.value
        return value

    def wait(self, stopping: Callable[[], bool], poll: float = 0.1) -> bool:
        """Wait until the start is set (True), or until `stopping()` (False)."""
        while not self._flag.wait(poll):
            if stopping():
                return False
        return True

    def close(self) -> None:
        self._flag.close()


def _request_termination(signum: int, frame: FrameType | None) -> None:
    global _terminate_requested
    _terminate_requested = True


def termination_requested() -> bool:
    return _terminate_requested


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def stderr_line(role: str) -> Callable[[str], None]:
    """A function that writes one line for `role` on stderr, whole (one write)."""

    def say(text: str) -> None:
        with contextlib.suppress(OSError):  # stderr closed or cut short: the run goes on without the line
            os.write(2, f"smsbatch: {role}: {text}\n".encode())

    return say


def report_crash(conn: Connection, role: str) -> None:
    """Send the traceback of the exception being handled to the main process."""
    text = traceback.format_exc()
    try:
        conn.send(ChildFailed(role, text))
    except OSError:
        sys.stderr.write(text)  # the main process is gone; say it where we can
