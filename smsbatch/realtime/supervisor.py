"""Child processes: spawn, watch, read, kill, shut down. Used by every backend
that runs processes on this machine, and by `smsbatch worker`.

Each child reports on its own pipe (a shared queue's write lock, held by a
child killed mid-write, would silence every other child). One selector waits
on every pipe and every process sentinel at once, so a child that dies is
noticed at once, never by a hang, and what it said before it died is read
first.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext
from multiprocessing.process import BaseProcess
from typing import Any

from smsbatch.core.model import ChildFailed
from smsbatch.realtime.backend import Exited
from smsbatch.realtime.children import StopSignal

JOIN_SECONDS = 1.0  # at shutdown: how long children get to exit on their own before they are killed

Event = tuple[int, object]


@dataclass
class Child:
    role: str  # "producer", or a sender's name
    index: int  # sender index, -1 for the producer
    process: BaseProcess
    conn: Connection | None  # the read end of its report pipe; None once closed
    crashed: bool = False  # it reported an exception
    exited: bool = False


class Supervisor:
    def __init__(self, ctx: ForkContext) -> None:
        self.ctx = ctx
        self.stop_signal = StopSignal()  # a warm stop, for every child at once
        self.children: list[Child] = []
        self.selector = selectors.DefaultSelector()
        self.pid = os.getpid()

    def spawn(self, role: str, index: int, target: Callable[..., None], args: tuple[Any, ...]) -> Child:
        """Start `target(*args, conn, stop_signal, parent_pid)` in a child process."""
        reader, writer = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(
            target=target,
            args=(*args, writer, self.stop_signal, self.pid),
            name=f"smsbatch {role}",
            daemon=True,
        )
        process.start()
        writer.close()  # so that the child's death reads as end-of-file here
        child = Child(role, index, process, reader)
        self.children.append(child)
        self.selector.register(reader, selectors.EVENT_READ, (self._read, child))
        self.selector.register(process.sentinel, selectors.EVENT_READ, (self._exited, child))
        return child

    def events(self, timeout: float) -> list[Event]:
        """What children said and which exited, waiting up to `timeout` for the first."""
        found: list[Event] = []
        for key, _ in self.selector.select(timeout):
            handle, child = key.data
            handle(child, found)
        return found

    def _read(self, child: Child, found: list[Event], limit: int = 1000) -> None:
        for _ in range(limit):
            if child.conn is None:  # closed by its exit, earlier in the same wake-up
                return
            try:
                if not child.conn.poll():
                    return
                report = child.conn.recv()
            except (EOFError, OSError):
                self._close_conn(child)
                return
            if isinstance(report, ChildFailed):
                child.crashed = True
            found.append((child.index, report))

    def _close_conn(self, child: Child) -> None:
        if child.conn is not None:
            self.selector.unregister(child.conn)
            child.conn.close()
            child.conn = None

    def _exited(self, child: Child, found: list[Event]) -> None:
        self._read(child, found, limit=10**9)  # everything it said before it went
        child.exited = True
        self.selector.unregister(child.process.sentinel)
        child.process.join()
        code = child.process.exitcode
        reason = "exception" if child.crashed else exit_reason(code)
        found.append((child.index, Exited(child.index, code == 0, reason, child.crashed)))

    def child(self, index: int) -> Child | None:
        return next((child for child in self.children if child.index == index), None)

    def kill(self, index: int) -> None:
        child = self.child(index)
        if child is not None and not child.exited:
            child.process.kill()

    def kill_all(self) -> None:
        self.stop_signal.set()
        for child in self.children:
            if not child.exited:
                child.process.kill()

    def running(self, index: int | None = None) -> bool:
        """Is that child (or any sender, for None) still running?"""
        return any(not c.exited for c in self.children if (c.index == index if index is not None else c.index >= 0))

    def close(self) -> list[Event]:
        """Whatever happened: collect what the children said, and leave none behind."""
        self.stop_signal.set()
        said: list[Event] = []
        deadline = time.monotonic() + JOIN_SECONDS
        for child in self.children:
            if not child.exited:
                child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            if child.conn is not None:
                self._read(child, said, limit=10**9)
                self._close_conn(child)
        self.stop_signal.close()
        self.selector.close()
        return said


def exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"
