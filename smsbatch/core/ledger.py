"""The ledger: every message's fate, and what each sender holds right now.

Pure bookkeeping, no processes. A message is counted once, the first time an
attempt at it ends for good (sent, or failed with no retries left); a report
about a message already counted is a duplicate and changes nothing. What a
sender has claimed and not yet reported can be released when it dies, to be
sent again by the others.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from smsbatch.core.model import EXPIRED, FAILED, GOES_ROUND, ROUND, SENT, Done

OPEN = 0
# A RETRY, THROTTLED or INTERRUPTED outcome leaves the message open: it goes round again.
_FINAL_STATE = bytes(OPEN if code in GOES_ROUND else code for code in range(256))


@dataclass
class Claim:
    """Messages a sender took (a batch, or part of one) and which of them it has
    reported: what the runner re-queues if the sender dies, and what a sender
    through Redis gives back when it leaves."""

    ids: range | tuple[int, ...]
    done: bytearray = field(init=False)
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.done = bytearray(len(self.ids))
        self.remaining = len(self.ids)

    def mark(self, offsets: range | tuple[int, ...] | list[int]) -> range | list[int]:
        """Mark `offsets` reported; returns those not reported before."""
        if isinstance(offsets, range) and offsets.step == 1:
            part = slice(offsets.start, offsets.stop)
            if self.done[part].count(0) == len(offsets):  # the usual case: a run, none seen before
                self.done[part] = b"\1" * len(offsets)
                self.remaining -= len(offsets)
                return offsets
        new = []
        for offset in offsets:  # one at a time: an offset repeated in `offsets` counts once
            if not self.done[offset]:
                self.done[offset] = 1
                new.append(offset)
        self.remaining -= len(new)
        return new

    def open_offsets(self) -> list[int]:
        return [offset for offset, done in enumerate(self.done) if not done]

    def ids_at(self, offsets: range | list[int]) -> range | tuple[int, ...]:
        ids = self.ids
        if isinstance(offsets, range) and isinstance(ids, range):
            return ids[offsets.start : offsets.stop]
        return tuple(ids[offset] for offset in offsets)


class Ledger:
    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.state = bytearray(messages)  # OPEN, SENT or FAILED per message id
        self.sent = 0
        self.failed = 0
        self.expired = 0  # not accepted within --validity
        self.retried = 0  # attempts that failed and went round again
        self.duplicates = 0
        self.claims: dict[int, dict[int, Claim]] = {}  # sender -> batch key -> claim
        self._retry_attempt: array[int] | None = None

    @property
    def retry_attempt(self) -> array[int]:
        """The latest attempts entry (attempt + ROUND * rounds) scheduled per message (made on first use)."""
        if self._retry_attempt is None:
            self._retry_attempt = array("I", bytes(4 * self.messages))
        return self._retry_attempt

    @property
    def final(self) -> int:
        return self.sent + self.failed + self.expired

    @property
    def unsent(self) -> int:
        return self.messages - self.final

    def claim(self, sender: int, key: int, ids: range | tuple[int, ...]) -> None:
        self.claims.setdefault(sender, {})[key] = Claim(ids)

    def held(self, sender: int) -> int:
        """Messages a sender has claimed and not yet reported."""
        return sum(claim.remaining for claim in self.claims.get(sender, {}).values())

    def apply(self, sender: int, done: Done) -> bool:
        """Count one report against the sender's claim; True when it finishes the claim."""
        assert done.key is not None, "a claimed batch is reported by its key"
        claims = self.claims[sender]
        claim = claims[done.key]
        new = claim.mark(done.offsets)
        self.duplicates += len(done.offsets) - len(new)
        if len(new) == len(done.offsets):
            self.record(claim.ids_at(new), done.outcomes)
        else:
            self.record(claim.ids_at(new), _outcomes_of(new, done))
        if claim.remaining == 0:
            del claims[done.key]
            return True
        return False

    # ---- the one counting path: by message id; a report may come twice ----

    def record(self, ids: range | tuple[int, ...], outcomes: bytes) -> None:
        """Count final outcomes by message id; a message counted before is a
        duplicate (at-least-once delivery). RETRY outcomes are counted by retry()."""
        if isinstance(ids, range) and self.state[ids.start : ids.stop].count(OPEN) == len(ids):
            final = outcomes.translate(_FINAL_STATE)
            self.state[ids.start : ids.stop] = final
            self.sent += outcomes.count(SENT)
            self.failed += outcomes.count(FAILED)
            self.expired += outcomes.count(EXPIRED)
            return
        for message_id, outcome in zip(ids, outcomes, strict=False):
            if outcome in GOES_ROUND:
                continue
            if self.state[message_id] != OPEN:
                self.duplicates += 1
                continue
            self.state[message_id] = outcome
            if outcome == SENT:
                self.sent += 1
            elif outcome == EXPIRED:
                self.expired += 1
            else:
                self.failed += 1

    def retry(self, message_id: int, entry: int) -> bool:
        """True if an open message is due to go round again as `entry` (its
        attempts entry: attempt + ROUND * rounds) and that was not asked for
        before; if not, the report is a duplicate (a message counted already,
        or a go-round reported twice: a batch redelivered from a silent sender).
        A new attempt number is a retry; the same one, a throttled or interrupted
        attempt going round."""
        before = self.retry_attempt[message_id]
        if self.state[message_id] != OPEN or before >= entry:
            self.duplicates += 1
            return False
        self.retry_attempt[message_id] = entry
        if entry % ROUND > max(before % ROUND, 1):
            self.retried += 1
        return True

    def release_part(self, sender: int, key: int, offsets: tuple[int, ...]) -> list[int]:
        """A live sender gives back part of a batch it claimed: those offsets are
        no longer its (marked done in its claim, still open in the ledger)."""
        claims = self.claims[sender]
        released = list(claims[key].mark(offsets))
        if claims[key].remaining == 0:
            del claims[key]
        return released

    def release(self, sender: int) -> dict[int, list[int]]:
        """Drop a dead sender's claims; {batch key: offsets it never reported}."""
        released = {}
        for key, claim in self.claims.pop(sender, {}).items():
            offsets = [i for i in claim.open_offsets() if self.state[claim.ids[i]] == OPEN]
            if offsets:
                released[key] = offsets
        return released


def _outcomes_of(offsets: Sequence[int], done: Done) -> bytes:
    """The outcomes `done` reports for `offsets` (each offset's first, in the order of `offsets`)."""
    first: dict[int, int] = {}
    for offset, outcome in zip(done.offsets, done.outcomes, strict=True):
        first.setdefault(offset, outcome)
    return bytes(first[offset] for offset in offsets)
