"""The producer's side of a run through Redis: XADD with back-pressure.

The producer process (realtime/producer.py) puts batches through the same
transport methods as on one machine. A lost Redis, or a run gone from it, is
raised (TransportLost): the producer says so in one line and exits 1.
"""

from __future__ import annotations

import time

from smsbatch.broker.codec import batch_fields
from smsbatch.broker.keys import RunKeys
from smsbatch.broker.patient import Patient, RunGone, connect
from smsbatch.broker.store import RunStore
from smsbatch.core.model import MessageBatch
from smsbatch.realtime.children import stderr_line

MAX_QUEUED = 200  # batches the producer may have waiting in the work stream
FULL_POLL_SECONDS = 0.01  # how often a producer facing a full stream looks again


class StreamProducer:
    """The producer's transport (see local/transport.py)."""

    capacity = 1  # batches put before the run may start: senders elsewhere come and go anyway

    def __init__(self, url: str, keys: RunKeys, timeout: float) -> None:
        self.url, self.keys, self.timeout = url, keys, timeout
        self.store: RunStore | None = None

    def put(self, batch: MessageBatch, timeout: float) -> bool:
        """XADD `batch` once the stream has room (False if none came within `timeout`)."""
        if self.store is None:  # made in the producer process, not inherited through fork
            patient = Patient(self.url, self.timeout, stderr_line("producer"))
            self.store = RunStore(connect(self.url), self.keys, patient)
        deadline = time.monotonic() + timeout
        while self.store.work_length() >= MAX_QUEUED:
            if time.monotonic() >= deadline:
                return False
            time.sleep(FULL_POLL_SECONDS)
        if not self.store.add_work(batch_fields(batch.ids, batch.numbers, batch.attempts)):
            raise RunGone("the run's work stream is gone from Redis")  # the coordinator says so too
        return True

    def flush(self) -> None:
        pass  # every XADD has been answered

    def abandon(self) -> None:
        pass
