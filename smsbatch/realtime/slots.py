"""A real-time sender's window: the model's slot board and its sends in flight.

All times are simulated seconds. Which free slot starts the next message, and
when, is the model's rule (core/sender_model.py: SlotBoard, Pacer); this module
only keeps what is in flight, so the sender knows when to wake up: a send in
flight is due at its start plus its drawn send time.
"""

from __future__ import annotations

import heapq

from smsbatch.core.model import MessageBatch
from smsbatch.core.sender_model import Pacer, RunOutages, SenderModel

# (due, slot, start, batch, offset, seconds, outcome): at equal due times the lower slot ends first,
# as in the model's tie order (a slot is in flight once at a time, so the key is unique).
InFlight = tuple[float, int, float, MessageBatch, int, float, int]


class Slots:
    def __init__(self, model: SenderModel, accounts: dict[str, Pacer], outages: RunOutages | None = None) -> None:
        self.board = model.board(accounts, outages)
        self.pacer = self.board.pacer
        self.in_flight: list[InFlight] = []  # heap by (due, slot)

    @property
    def free(self) -> int:
        return len(self.board)

    def opens_at(self, now: float) -> float:
        """Its caps and gate: the earliest simulated start of the next send, asked at `now`."""
        return self.pacer.opens_at(max(self.pacer.next_start, now))

    def startable_by(self, horizon: float, now: float = 0.0) -> int:
        """Free slots that can start a message by the simulated time `horizon`:
        a slot waiting for the rate cap holds nothing, as in the model."""
        return self.pacer.starts_by(horizon, len(self.board), now)

    def earliest_start(self, now: float) -> float:
        """The simulated time a message taken now would start, were nothing waiting before it."""
        if len(self.board):
            return self.pacer.opens_at(self.board.first_free())
        return self.pacer.opens_at(self.in_flight[0][0]) if self.in_flight else now

    def launch(
        self, due: float, slot: int, start: float, batch: MessageBatch, offset: int, seconds: float, outcome: int
    ) -> None:
        heapq.heappush(self.in_flight, (due, slot, start, batch, offset, seconds, outcome))

    def next_due(self) -> float:
        """The due time of the earliest send in flight (call only when there is one)."""
        return self.in_flight[0][0]
