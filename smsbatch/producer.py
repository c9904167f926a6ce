"""The producer: makes the run's messages and streams them onto the work queue.

A MessageSource cuts the run into numbered batches. Batch k is the same every
time it is made (message i's random number comes from the run seed and i; file
numbers from the file's order), so the runner can make any batch again when it must re-queue
what a dead sender held.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from smsbatch.children import enter_child, parent_alive, report_crash, termination_requested
from smsbatch.model import MessageBatch, ProducerDone
from smsbatch.phones import PhonePool, load_recipients_text, read_recipients

PUT_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class MessageSource:
    """`messages` messages in batches of `batch_size`, from a pool or a file."""

    messages: int
    batch_size: int
    text: str
    seed: int
    pool: PhonePool | None = None
    recipients: str | None = None  # path of a recipients file
    region: str = "US"

    @property
    def batch_count(self) -> int:
        return -(-self.messages // self.batch_size)

    def ids(self, key: int) -> range:
        start = key * self.batch_size
        return range(start, min(start + self.batch_size, self.messages))

    def batches(self) -> Iterator[MessageBatch]:
        if self.pool is not None:
            for key in range(self.batch_count):
                yield self.batch(key)
            return
        yield from self._file_batches()

    def batch(self, key: int) -> MessageBatch:
        if self.pool is not None:
            ids = self.ids(key)
            return MessageBatch(key, ids, self.pool.numbers_packed(self.seed, ids), self.text)
        for batch in self._file_batches():
            if batch.key == key:
                return batch
        raise KeyError(key)

    def _file_batches(self) -> Iterator[MessageBatch]:
        numbers = (n for n in read_recipients(load_recipients_text(self.recipients), self.region) if n)
        for key in range(self.batch_count):
            ids = self.ids(key)
            yield MessageBatch.of(key, ids, [next(numbers) for _ in ids], self.text)


def run_producer(source: MessageSource, transport, conn, stop_signal, parent_pid: int) -> None:
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
        transport.flush()  # everything is on its way before we say so
        conn.send(ProducerDone(batches, produced))
    except BaseException:
        report_crash(conn, "producer")
        os._exit(1)
    finally:
        conn.close()


def _put(transport, batch: MessageBatch, stop_signal, parent_pid: int) -> bool:
    """Put with back-pressure; False if the run is stopping."""
    while not (stop_signal.is_set() or termination_requested()) and parent_alive(parent_pid):
        if transport.put(batch, PUT_POLL_SECONDS):
            return True
    return False
