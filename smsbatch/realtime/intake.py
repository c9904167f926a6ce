"""What a real-time sender takes off the work queue, and what it keeps.

It takes batches for its free slots and its next wake-ups only, keeps what it
will start soon (the backlog) and gives the rest back at once (Released), so a
slow sender never sits on messages a faster one could send sooner. A batch
another sender would start sooner goes back whole.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from smsbatch.core.clock import TIME_SLACK, SimClock
from smsbatch.core.model import Claimed, MessageBatch, Released, Stop
from smsbatch.core.sender_model import SenderModel
from smsbatch.realtime.slots import Slots

DEFER_PAUSE_SECONDS = 0.001  # real seconds: after giving a batch back for another sender
CLOSED_POLL_SECONDS = 0.5  # real seconds a closed sender waits after giving back what it took (it looks for its Stop)


class Intake:
    def __init__(
        self,
        index: int,
        model: SenderModel,
        clock: SimClock,
        slots: Slots,
        wake: float,
        ahead: int,
        take: Callable[[float], MessageBatch | Stop | None],
        report: Callable[[object], None],
        pause: Callable[[float], None],
        waiting: Callable[[float], None],
        sooner_elsewhere: Callable[[MessageBatch, float], bool],
        send_instantly: Callable[[MessageBatch], None],
        expire_all: Callable[[MessageBatch], None] = lambda batch: None,
    ) -> None:
        self.index = index
        self.model = model
        self.clock = clock
        self.slots = slots
        self.wake = wake  # real seconds between a busy sender's wake-ups
        self.ahead = ahead  # starts it keeps in hand beyond its free slots, once busy
        self.take_item = take
        self.report = report
        self.pause = pause  # returns early when a stop is requested
        self.waiting = waiting  # posts when a free slot could start work it waits for (inf: not waiting)
        self.sooner_elsewhere = sooner_elsewhere  # could another sender start this batch first?
        self.send_instantly = send_instantly  # a sender that never waits sends a batch whole, at once
        self.expire_all = expire_all  # a batch taken after --validity expires whole, at once
        self.backlog: deque[tuple[MessageBatch, int]] = deque()  # (batch, offset) not started
        self.look_again_at = 0.0  # real time: a closed sender that gave work back looks again then
        self.stopped_by_marker = False

    def wants_work(self) -> bool:
        """Room for what it would start now or within its next wake-ups: a busy
        sender tops up before it runs dry, a slow one takes only for free slots."""
        if self.stopped_by_marker:
            return False
        # Closed (down, paused, a backup not needed) with nothing to do: it still looks, for its Stop.
        if len(self.backlog) < self.startable() + self._ahead():
            return True
        return self._idle() and self.closed() and self.clock.clock.now() >= self.look_again_at

    def _idle(self) -> bool:
        return not self.backlog and not self.slots.in_flight

    def closed(self) -> bool:
        """Its gate is closed past the next wake-up: down, paused, or a backup not needed."""
        if self.slots.pacer.gate is None:
            return False
        now = self.clock.now()
        return self.slots.opens_at(now) > now + self.wake * self.clock.speed + TIME_SLACK

    def startable(self) -> int:
        """Free slots that can start a message before the next wake-up."""
        if not self.model.gated:
            return self.slots.free
        now = self.clock.now()
        return self.slots.startable_by(now + self.wake * self.clock.speed + TIME_SLACK, now)

    def _ahead(self) -> int:
        """What it keeps beyond its free slots: nothing while its gate is closed."""
        return 0 if self.closed() else self.ahead

    def fill(self) -> None:
        """Take what is on the queue now, for every free slot."""
        while self.wants_work() and self.take(0.0):
            pass

    def take(self, timeout: float) -> bool:
        """Take one item, waiting up to `timeout` real seconds; False if none came
        (or it went back to another sender)."""
        start = self._start_if_taken()
        idle = bool(self.slots.free) and not self.backlog and self.startable() > 0
        self.waiting(start if idle else math.inf)  # the same time it judges the batch by: no ping-pong
        item = self.take_item(timeout)
        if item is None:
            return False
        self.waiting(math.inf)
        if isinstance(item, Stop):
            self.stopped_by_marker = True
            return True
        self.report(Claimed(self.index, item.key))
        if self.clock.now() >= self.model.validity:  # after --validity every queued message has expired
            self.expire_all(item)
            return True
        if self.closed():  # it cannot start it: back it goes, whole, for the others
            self.report(Released(self.index, item.key, tuple(range(len(item)))))
            self.look_again_at = self.clock.clock.now() + CLOSED_POLL_SECONDS
            return False
        if self.sooner_elsewhere(item, start):  # the model gives it to another: back it goes, whole
            self.report(Released(self.index, item.key, tuple(range(len(item)))))
            self.pause(DEFER_PAUSE_SECONDS)  # the one it is for takes it, not this one again
            return False
        if self.model.instant:
            self.send_instantly(item)
            return True
        self._keep(item)
        return True

    def _keep(self, batch: MessageBatch) -> None:
        # Up to twice what it tops up to: a fast sender keeps whole batches, a
        # slow one (ahead 0) only what its free slots start now.
        kept = max(0, min(len(batch), self.startable() + 2 * self._ahead() - len(self.backlog)))
        if kept < len(batch):
            self.report(Released(self.index, batch.key, tuple(range(kept, len(batch)))))
        self.backlog.extend((batch, offset) for offset in range(kept))

    def _start_if_taken(self) -> float:
        """The simulated time a message taken now would start here."""
        if self.backlog:
            return math.inf  # after what it holds: anyone waiting now comes first
        return self.slots.earliest_start(self.clock.now())
