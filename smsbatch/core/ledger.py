"""The ledger: every message's fate, and what each sender holds right now.

Pure bookkeeping, no processes. A message is counted once, the first time an
attempt at it ends for good (sent, or failed with no retries left); a report
about a message already counted is a duplicate and changes nothing. What a
sender has claimed and not yet reported can be released when it dies, to be
sent again by the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smsbatch.core.model import FAILED, RETRY, SENT, Done

OPEN = 0
# A RETRY outcome leaves the message open: it goes round again.
_FINAL_STATE = bytes(range(256)).replace(bytes([RETRY]), bytes([OPEN]))


@dataclass
class Claim:
    ids: range | tuple[int, ...]
    done: bytearray = field(init=False)
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.done = bytearray(len(self.ids))
        self.remaining = len(self.ids)


class Ledger:
    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.state = bytearray(messages)  # OPEN, SENT or FAILED per message id
        self.sent = 0
        self.failed = 0
        self.retried = 0  # attempts that failed and went round again
        self.duplicates = 0
        self.claims: dict[int, dict[int, Claim]] = {}  # sender -> batch key -> claim
        self._retry_attempt: bytearray | None = None  # the broker's path only

    @property
    def retry_attempt(self) -> bytearray:
        """The latest attempt scheduled per message (made on first use)."""
        if self._retry_attempt is None:
            self._retry_attempt = bytearray(self.messages)
        return self._retry_attempt

    @property
    def final(self) -> int:
        return self.sent + self.failed

    @property
    def unsent(self) -> int:
        return self.messages - self.final

    def claim(self, sender: int, key: int, ids: range | tuple[int, ...]) -> None:
        self.claims.setdefault(sender, {})[key] = Claim(ids)

    def held(self, sender: int) -> int:
        """Messages a sender has claimed and not yet reported."""
        return sum(claim.remaining for claim in self.claims.get(sender, {}).values())

    def apply(self, sender: int, done: Done) -> bool:
        """Count one report; True when it finishes the sender's claim on that batch."""
        claims = self.claims[sender]
        claim = claims[done.key]
        offsets = done.offsets
        fast = isinstance(claim.ids, range)
        if not (fast and isinstance(offsets, range) and self._apply_run(claim, offsets, done.outcomes)):
            for offset, outcome in zip(offsets, done.outcomes, strict=False):
                self._apply_one(claim, offset, outcome)
        if claim.remaining == 0:
            del claims[done.key]
            return True
        return False

    def _apply_run(self, claim: Claim, offsets: range, outcomes: bytes) -> bool:
        """The fast path: a run of offsets none of which was counted before."""
        first = claim.ids[offsets.start] if offsets else 0
        end = first + len(offsets)
        if claim.done[offsets.start : offsets.stop].count(0) != len(offsets):
            return False
        if self.state[first:end].count(OPEN) != len(offsets):
            return False
        claim.done[offsets.start : offsets.stop] = b"\1" * len(offsets)
        claim.remaining -= len(offsets)
        self.state[first:end] = outcomes.translate(_FINAL_STATE)
        self.sent += outcomes.count(SENT)
        self.failed += outcomes.count(FAILED)
        self.retried += outcomes.count(RETRY)
        return True

    def _apply_one(self, claim: Claim, offset: int, outcome: int) -> None:
        if claim.done[offset]:
            self.duplicates += 1
            return
        claim.done[offset] = 1
        claim.remaining -= 1
        message_id = claim.ids[offset]
        if self.state[message_id] != OPEN:
            self.duplicates += 1
            return
        if outcome == SENT:
            self.sent += 1
        elif outcome == FAILED:
            self.failed += 1
        else:
            self.retried += 1
            return
        self.state[message_id] = outcome

    # ---- the broker's path: reports name message ids, and may come twice ----

    def record(self, ids: range | tuple[int, ...], outcomes: bytes) -> None:
        """Count final outcomes by message id; a message counted before is a
        duplicate (at-least-once delivery). RETRY outcomes are counted by retry()."""
        if isinstance(ids, range) and self.state[ids.start : ids.stop].count(OPEN) == len(ids):
            final = outcomes.translate(_FINAL_STATE)
            self.state[ids.start : ids.stop] = final
            self.sent += outcomes.count(SENT)
            self.failed += outcomes.count(FAILED)
            return
        for message_id, outcome in zip(ids, outcomes, strict=False):
            if outcome == RETRY:
                continue
            if self.state[message_id] != OPEN:
                self.duplicates += 1
                continue
            self.state[message_id] = outcome
            if outcome == SENT:
                self.sent += 1
            else:
                self.failed += 1

    def retry(self, message_id: int, attempt: int) -> bool:
        """True if `attempt` of an open message is due and not asked for before."""
        if self.state[message_id] != OPEN or self.retry_attempt[message_id] >= attempt:
            return False
        self.retry_attempt[message_id] = attempt
        self.retried += 1
        return True

    def release_part(self, sender: int, key: int, offsets: tuple[int, ...]) -> list[int]:
        """A live sender gives back part of a batch it claimed: those offsets are
        no longer its (marked done in its claim, still open in the ledger)."""
        claims = self.claims[sender]
        claim = claims[key]
        released = [o for o in offsets if not claim.done[o]]
        for offset in released:
            claim.done[offset] = 1
        claim.remaining -= len(released)
        if claim.remaining == 0:
            del claims[key]
        return released

    def release(self, sender: int) -> dict[int, list[int]]:
        """Drop a dead sender's claims; {batch key: offsets it never reported}."""
        released = {}
        for key, claim in self.claims.pop(sender, {}).items():
            offsets = [i for i, done in enumerate(claim.done) if not done and self.state[claim.ids[i]] == OPEN]
            if offsets:
                released[key] = offsets
        return released
