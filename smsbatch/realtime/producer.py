"""The producer: makes the run's messages and streams them onto the work queue.

A MessageSource cuts the run into numbered batches. Batch k is the same every
time it is made (message i's random number comes from the run seed and i; a
recipients list's numbers from its spool, by offset), so the runner can make any
batch again when it must re-queue what a dead sender held.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from smsbatch.core.model import MessageBatch, ProducerDone, Ready, TransportLost
from smsbatch.core.phones import PhonePool, Recipients
from smsbatch.realtime.children import (
    StopSignal,
    enter_child,
    parent_alive,
    report_crash,
    stderr_line,
    termination_requested,
)

PUT_POLL_SECONDS = 0.1
READY_BATCHES = 16  # batches queued before simulated time may start (the queue holds more)


@dataclass(frozen=True)
class MessageSource:
    """`messages` messages in batches of `batch_size`, from a pool or a recipients list."""

    messages: int
    batch_size: int
    text: str
    seed: int
    pool: PhonePool | None = None
    recipients: Recipients | None = None  # a list's distinct numbers, read already

    @property
    def batch_count(self) -> int:
        return -(-self.messages // self.batch_size)

    def ids(self, key: int) -> range:
        start = key * self.batch_size
        return range(start, min(start + self.batch_size, self.messages))

    @property
    def duplicate_numbers(self) -> int:
        """Recipients lines skipped as repeats of a number (random numbers never repeat)."""
        return self.recipients.duplicates if self.recipients is not None else 0

    def batches(self) -> Iterator[MessageBatch]:
        for key in range(self.batch_count):
            yield self.batch(key)

    def batch(self, key: int) -> MessageBatch:
        ids = self.ids(key)
        if self.pool is not None:
            numbers = self.pool.numbers_packed(self.seed, ids)
        else:
            assert self.recipients is not None, "a source has a pool or a recipients list"
            numbers = self.recipients.packed(ids.start, ids.stop)
        return MessageBatch(key, ids, numbers, self.text)


class WorkPutter(Protocol):
    """The producer's side of a transport (local/transport.py, broker/producer.py)."""

    @property
    def capacity(self) -> int:
        """Batches it may queue before the run starts."""
        ...

    def put(self, batch: MessageBatch, timeout: float) -> bool: ...

    def flush(self) -> None: ...

    def abandon(self) -> None: ...


def run_producer(
    source: MessageSource, transport: WorkPutter, conn: Connection, stop_signal: StopSignal, parent_pid: int
) -> None:
    """Entry point of the producer process."""
    enter_child("smsbatch: producer", parent_pid)
    try:
        produced = batches = 0
        for batch in source.batches():
            if not _put(transport, batch, stop_signal, parent_pid):
                transport.abandon()  # stopping: what is still buffered will never be read
                return
            produced += len(batch)
            batches += 1
            if batches == min(source.batch_count, transport.capacity, READY_BATCHES):
                conn.send(Ready(-1))  # work is queued ahead: the run may start without waiting for us
        transport.flush()  # everything is on its way before we say so
        conn.send(ProducerDone(batches, produced))
    except TransportLost as error:  # the runner has its own word on it: one line here, no traceback
        stderr_line("producer")(f"{error}; stopping")
        conn.close()
        os._exit(1)
    except BaseException:
        report_crash(conn, "producer")
        os._exit(1)
    finally:
        conn.close()


def _put(transport: WorkPutter, batch: MessageBatch, stop_signal: StopSignal, parent_pid: int) -> bool:
    """Put with back-pressure; False if the run is stopping."""
    while not (stop_signal.is_set() or termination_requested()) and parent_alive(parent_pid):
        if transport.put(batch, PUT_POLL_SECONDS):
            return True
    return False
