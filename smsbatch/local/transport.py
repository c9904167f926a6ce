"""How work travels on one machine: a bounded multiprocessing.Queue, and the
waiting board. (Reports travel on a pipe per child: realtime/supervisor.py.)
LocalBackend (local/backend.py) holds one for the runner; the producer and
the senders use the methods below.

    backend:  offer(item), forget(sender), holds_lock(sender), is_waiting(sender),
              free_lock_of(sender), writer_stuck(), close()
    producer: put(batch, timeout), flush(), abandon()
    sender:   taker(sender)(timeout), waiting(sender, start), sooner_elsewhere(sender, batch, start),
              through a LocalSenderPort (the SenderPort of realtime/sender.py)

Who takes the next batch follows the model, not the race for the queue's
lock: every sender with a free slot and nothing to start posts on a shared
board the simulated time it could start a message (inf when it has work). A sender
that reads a batch another could start sooner (or as soon, with a lower
index) gives it back through the runner (Released) for that one to take. In the
middle of a run nobody is waiting and this costs a glance at the board; at
the end, when messages trickle in, it keeps a slow sender that happens to
hold the lock from taking work a faster, idle one would start first.
"""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext
from multiprocessing.reduction import ForkingPickler
from typing import Any, ClassVar

from smsbatch.core.clock import TIME_SLACK
from smsbatch.core.model import MessageBatch, Ready, SenderDone, Stop
from smsbatch.core.sender_model import Pacer
from smsbatch.realtime.children import RunStart, StopSignal

WRITER_CHECK_SECONDS = 1.0  # a write lock held this long after its holder died is held for good
LOCK_SECONDS = 1.0  # real seconds a start waits for its account's lock


class SharedPacer(Pacer):
    """An account's cap shared by sender processes: its next start lives in
    shared memory, and each start takes it under a lock. A sender killed while
    holding the lock (a few float operations) would hold it for good, so a
    start waits at most LOCK_SECONDS for it, then goes on without it."""

    __slots__ = ("cell", "lock")

    def __init__(self, gap: float, ctx: ForkContext) -> None:
        self.cell = ctx.RawArray("d", 1)
        self.lock = ctx.Lock()
        super().__init__(gap)

    @property
    def next_start(self) -> float:
        return float(self.cell[0])

    @next_start.setter
    def next_start(self, value: float) -> None:
        self.cell[0] = value

    def start(self, ready: float) -> float:
        locked = self.lock.acquire(timeout=LOCK_SECONDS)
        try:
            return super().start(ready)
        finally:
            if locked:
                self.lock.release()


class LocalTransport:
    def __init__(self, ctx: ForkContext, senders: int, account_gaps: dict[str, float] | None = None) -> None:
        self.capacity = max(16, 4 * senders)  # batches: bounded, for back-pressure on the producer
        # Any: the taker and free_lock_of use the queue's private parts (multiprocessing/queues.py).
        self.work: Any = ctx.Queue(maxsize=self.capacity)
        self.lock_holder = ctx.RawValue("i", 0)  # 1 + the sender holding the queue's read lock
        # Per sender: simulated time it could start work it waits for with a free slot; inf: busy.
        self.board = ctx.RawArray("d", [math.inf] * max(1, senders))
        self.more_queued = False  # in a sender: was there more on the queue after its last take?
        self.accounts: dict[str, Pacer] = {name: SharedPacer(gap, ctx) for name, gap in (account_gaps or {}).items()}

    # ---- the runner ----

    def offer(self, item: MessageBatch | Stop) -> bool:
        """Put without waiting; False if the queue is full (try again later)."""
        try:
            self.work.put_nowait(item)
        except queue.Full:
            return False
        return True

    def forget(self, sender: int) -> None:
        """A sender that is gone waits for nothing: never put a batch back for it."""
        self.board[sender] = math.inf

    def holds_lock(self, sender: int) -> bool:
        holder: int = self.lock_holder.value
        return holder == sender + 1

    def free_lock_of(self, sender: int) -> bool:
        """A sender killed while waiting for work leaves the queue's read lock
        held for good: release it on its behalf (a multiprocessing Lock is a
        semaphore; any process may post it). True if it held the lock."""
        if self.lock_holder.value != sender + 1:
            return False
        self.lock_holder.value = 0
        self.work._rlock.release()
        return True

    def writer_stuck(self) -> bool:
        """True if the queue's write lock stays held (its holder, the producer,
        died mid-write: the pipe may hold half a message)."""
        lock = getattr(self.work, "_wlock", None)
        if lock is None:
            return False
        if not lock.acquire(timeout=WRITER_CHECK_SECONDS):
            return True
        lock.release()
        return False

    def close(self) -> None:
        self.work.cancel_join_thread()  # nobody will read what is left on it
        self.work.close()

    # ---- the producer ----

    def put(self, batch: MessageBatch, timeout: float) -> bool:
        """Put, waiting up to `timeout` for room; False if there was none."""
        try:
            self.work.put(batch, timeout=timeout)
        except queue.Full:
            return False
        return True

    def flush(self) -> None:
        """Return once everything put is in the pipe."""
        self.work.close()
        self.work.join_thread()

    def abandon(self) -> None:
        """Exit without waiting for what is still buffered: it will never be read."""
        self.work.cancel_join_thread()

    # ---- a sender ----

    def waiting(self, sender: int, since: float) -> None:
        self.board[sender] = since

    def is_waiting(self, sender: int) -> bool:
        """It posted that it waits for work: others give batches back for it."""
        return not math.isinf(self.board[sender])

    def sooner_elsewhere(self, sender: int, batch: MessageBatch, start: float) -> bool:
        """Could another sender start this batch sooner (or as soon, with a lower
        index), and would it otherwise go without? Only when the batch was the last
        on the queue: with more behind it, whoever waits takes the next one."""
        if self.more_queued:
            return False
        available = batch.available_at(0)
        mine = max(start, available)
        for other, since in enumerate(self.board[:]):
            if other == sender or math.isinf(since):
                continue
            theirs = max(since, available)
            if theirs < mine - TIME_SLACK or (theirs <= mine + TIME_SLACK and other < sender):
                return True
        return False

    def taker(self, sender: int) -> Callable[[float], MessageBatch | Stop | None]:
        """Queue.get written out (same steps as multiprocessing/queues.py) so
        the read lock has a known holder.

        A blocking get holds the read lock while it waits, so idle senders
        queue up on the lock and only one polls the pipe (256 idle senders
        polling the pipe would all wake for every batch). While it holds the
        lock a sender writes its number in shared memory, so the runner can
        free the lock if the sender is killed (free_lock_of).
        """
        work, holder, me = self.work, self.lock_holder, sender + 1
        lock = work._rlock

        def take(timeout: float) -> MessageBatch | Stop | None:
            deadline = time.monotonic() + timeout
            if not (lock.acquire(True, timeout) if timeout > 0 else lock.acquire(False)):
                return None
            holder.value = me
            try:
                if not work._poll(max(0.0, deadline - time.monotonic())):
                    return None
                data = work._recv_bytes()
                work._sem.release()
                self.more_queued = work._poll(0)  # read by sooner_elsewhere(), in this process
            finally:
                holder.value = 0
                lock.release()
            item: MessageBatch | Stop = ForkingPickler.loads(data)
            return item

        return take


@dataclass(frozen=True)
class LocalSenderPorts:
    """Makes a sender's LocalSenderPort in its own process."""

    transport: LocalTransport
    run_start: RunStart  # set by the runner once every child is ready
    index: int
    via: ClassVar[str] = ""

    def __call__(self, conn: Connection, stop_signal: StopSignal) -> LocalSenderPort:
        return LocalSenderPort(self.transport, self.run_start, self.index, conn, stop_signal)


class LocalSenderPort:
    """What a sender process works through on one machine: the work queue
    (its taker), the waiting board, the shared start, its report pipe."""

    def __init__(
        self, transport: LocalTransport, run_start: RunStart, index: int, conn: Connection, stop_signal: StopSignal
    ) -> None:
        self.transport = transport
        self.run_start = run_start
        self.index = index
        self.model_key = index
        self.conn = conn
        self.stop_signal = stop_signal
        self._take = transport.taker(index)

    def open(self, stopping: Callable[[], bool]) -> float | None:
        self.conn.send(Ready(self.index))
        if not self.run_start.wait(stopping):
            self.conn.send(SenderDone(self.index))  # it will send nothing: the runner need not wait for it
            return None
        return self.run_start.value

    def take(self, timeout: float) -> MessageBatch | Stop | None:
        return self._take(timeout)

    def report(self, item: object) -> None:
        self.conn.send(item)

    def pause(self, seconds: float) -> None:
        self.stop_signal.wait(seconds)  # returns early when a warm stop is asked for

    def waiting(self, start: float) -> None:
        self.transport.waiting(self.index, start)

    def sooner_elsewhere(self, batch: MessageBatch, start: float) -> bool:
        return self.transport.sooner_elsewhere(self.index, batch, start)

    def over(self) -> bool:
        return False  # the runner says when: a Stop on the queue, or the stop signal

    def account_caps(self) -> dict[str, Pacer]:
        return self.transport.accounts

    def close(self) -> None:
        self.conn.close()
