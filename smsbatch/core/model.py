"""What travels between processes: plain frozen dataclasses, one batch per put."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from smsbatch.core.stats import Stats

# Outcome codes of one attempt, one byte each in Progress.outcomes.
SENT = 1
FAILED = 2  # failed for good: no retries left
RETRY = 3  # failed, and goes back to the queue for another attempt
THROTTLED = 4  # the gateway answered throttled: back to the front of the queue, no retry used
INTERRUPTED = 5  # its sender went down mid-send: back to the front of the queue, no retry used
EXPIRED = 6  # not accepted within --validity: final
GOES_ROUND = (RETRY, THROTTLED, INTERRUPTED)  # outcomes that leave the message open
# A message that goes round again without using a retry (throttled, interrupted) keeps its
# attempt number; its attempts entry counts the rounds too, attempt + ROUND * rounds, so that
# every time it re-enters the queue its entry grows (the ledger's guard against a report
# heard twice). --max-retries is at most 100: an attempt number fits below ROUND.
ROUND = 128


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """Messages that travel together on the work queue.

    key >= 0 is the producer's batch number (its messages can be made again
    from the run's seed); key < 0 is a batch the runner put back on the queue
    (retries, or what a dead sender held).
    """

    key: int
    ids: range | tuple[int, ...]
    # The E.164 numbers, each ended by a newline: one string pickles and
    # unpickles in a few microseconds, a tuple of 1000 strings in a hundred.
    numbers: str
    text: str
    attempts: tuple[int, ...] | None = None  # None: first attempt for each message
    # Simulated time each message entered the queue (a retry's due time); None: time 0.
    available: tuple[float, ...] | None = None

    @classmethod
    def of(
        cls,
        key: int,
        ids: range | tuple[int, ...],
        phones: Iterable[str],
        text: str,
        attempts: tuple[int, ...] | None = None,
        available: tuple[float, ...] | None = None,
    ) -> MessageBatch:
        return cls(key, ids, pack_numbers(phones), text, attempts, available)

    def __len__(self) -> int:
        return len(self.ids)

    def phones(self) -> list[str]:
        return self.numbers.split()

    def attempt(self, offset: int) -> int:
        return 1 if self.attempts is None else self.attempts[offset] % ROUND

    def entry(self, offset: int) -> int:
        """Its attempts entry: attempt + ROUND * the times it went round without a retry."""
        return 1 if self.attempts is None else self.attempts[offset]

    def available_at(self, offset: int) -> float:
        return 0.0 if self.available is None else self.available[offset]

    def part(self, positions: range | Sequence[int], key: int | None = None) -> MessageBatch:
        """The messages at `positions` as a batch of their own (this batch's key
        unless one is given). The one place a batch is cut: the runner's
        re-queues, and what a sender through Redis keeps or gives back."""
        phones = self.phones()
        key = self.key if key is None else key
        if isinstance(positions, range) and positions.step == 1:  # a range of ids stays a range
            cut = slice(positions.start, positions.stop)
            attempts = self.attempts[cut] if self.attempts else None
            available = self.available[cut] if self.available else None
            return MessageBatch(key, self.ids[cut], pack_numbers(phones[cut]), self.text, attempts, available)
        return MessageBatch(
            key,
            tuple(self.ids[p] for p in positions),
            pack_numbers(phones[p] for p in positions),
            self.text,
            tuple(self.entry(p) for p in positions),
            tuple(self.available_at(p) for p in positions),
        )


def pack_numbers(phones: Iterable[str]) -> str:
    return "".join(phone + "\n" for phone in phones)


@dataclass(frozen=True, slots=True)
class Stop:
    """End of work for exactly one sender; answered by SenderDone."""


# Reports: each child writes them to its own pipe, the runner reads them all.


@dataclass(frozen=True, slots=True)
class Claimed:
    """A sender took a batch off the work queue (sent before it starts on it)."""

    sender: int
    key: int


@dataclass(frozen=True, slots=True)
class Beat:
    """A sender is alive (sent when it has said nothing else for a while, also mid-send)."""

    sender: int


@dataclass(frozen=True, slots=True)
class Ready:
    """A child is set up and waiting for the run's simulated time 0."""

    sender: int  # -1 for the producer (it has put its first batch)


@dataclass(frozen=True, slots=True)
class Released:
    """A sender gives back part of a batch it took and has not started."""

    sender: int
    key: int
    offsets: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Done:
    """Attempts a sender finished within one batch.

    key None: `offsets` are message ids (a transport that keeps the claims
    itself, Redis, reports what was done by id)."""

    key: int | None
    offsets: range | tuple[int, ...]  # positions within the batch (message ids when key is None)
    outcomes: bytes  # SENT, FAILED or RETRY per offset


@dataclass(frozen=True, slots=True)
class Progress:
    sender: int
    done: tuple[Done, ...]
    stats: Stats  # delta since the previous Progress
    # (id, phone, next attempt, simulated time it re-enters the queue) of RETRY outcomes
    retries: tuple[tuple[int, str, int, float], ...] = ()
    log: tuple[tuple[int, str, int, float, int], ...] = ()  # (id, phone, outcome, seconds, attempt)
    # (simulated end time, send-time bucket (stats.bucket_of), outcome, count) of the attempts that ended
    ended: tuple[tuple[float, int, int, int], ...] = ()
    lag: float = 0.0  # the most simulated time any send or start was handled late, so far
    capped: float = 0.0  # slot-seconds held back by the rate cap, since the previous Progress
    redelivered: int = 0  # messages taken over from a silent sender (Redis), since the previous Progress
    # --trace: (slot, attempt, simulated start, simulated end, outcome[, receipt time]) of each attempt that ended
    trace: tuple[tuple[int, int, float, float, int] | tuple[int, int, float, float, int, float | None], ...] = ()
    receipts: tuple[tuple[float, int], ...] = ()  # (when its receipt comes, what it says) of each message accepted
    paused_until: float = 0.0  # simulated time its pause after a throttled answer ends (live display)


@dataclass(frozen=True, slots=True)
class SenderDone:
    """A sender stopped (a Stop marker, or a warm stop) and will send nothing more."""

    sender: int
    given_back: int | None = None  # messages it had not started and gave back (Redis)


@dataclass(frozen=True, slots=True)
class ProducerDone:
    batches: int
    messages: int


class TransportLost(Exception):
    """The transport is gone (Redis unreachable, or the run's keys lost): a
    child that meets it says so in one line and exits 1, no traceback; the
    runner stops with what is known."""


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """An exception in a child, as text with its traceback."""

    role: str
    traceback: str
