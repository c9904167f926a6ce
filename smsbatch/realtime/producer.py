"""The producer: makes the run's messages (core/source.py's MessageSource,
batch by batch) and streams them onto the work queue."""

from __future__ import annotations

import os
from multiprocessing.connection import Connection
from typing import Protocol

from smsbatch.core.model import MessageBatch, ProducerDone, Ready, TransportLost
from smsbatch.core.source import MessageSource
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
