"""What every child process does first, and how it reports a crash."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback

from setproctitle import setproctitle

from smsbatch.model import ChildFailed

_PR_SET_PDEATHSIG = 1


def enter_child(title: str, parent_pid: int) -> None:
    """Name the process, leave Ctrl-C to the main process, die with the parent."""
    # The terminal sends Ctrl-C to the whole process group: the main process
    # turns it into a warm stop, so children must not die of it on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    setproctitle(title)
    _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: parent_alive() polling still catches it
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def report_crash(conn, role: str) -> None:
    """Send the traceback of the exception being handled to the main process."""
    text = traceback.format_exc()
    try:
        conn.send(ChildFailed(role, text))
    except OSError:
        sys.stderr.write(text)  # the main process is gone; say it where we can
