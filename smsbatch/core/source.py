"""A run's messages: MessageSource cuts them into numbered batches.

Batch k is the same every time it is made (message i's random number comes
from the run seed and i; a recipients list's numbers from its spool, by
offset), so the runner can make any batch again when it must re-queue what a
dead sender held, and the virtual engine can count the messages without
making them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from smsbatch.core.model import MessageBatch
from smsbatch.core.phones import PhonePool, Recipients


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
