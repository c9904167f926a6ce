"""An in-memory backend: the queue is a deque, the senders are plain objects
that finish every message the moment they take it, drawing its outcome from
the sender's model. No process, no sleep, no lock: the runner's tests drive
it turn by turn with `Runner.step(now)`, and the contract suite
(tests/test_contract.py) holds it to what every backend promises.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from smsbatch.core.model import (
    RETRY,
    Claimed,
    Done,
    MessageBatch,
    ProducerDone,
    Progress,
    Ready,
    SenderDone,
    Stop,
)
from smsbatch.core.sender_model import Draws, SenderModel
from smsbatch.core.settings import Settings
from smsbatch.core.source import MessageSource
from smsbatch.core.stats import Stats
from smsbatch.realtime.backend import PRODUCER, Exited, Phase, Work
from smsbatch.realtime.supervisor import Event


class FakeSender:
    """Takes one item per turn and finishes it at once, one message after another
    on its own simulated time (one slot; what is not a test of timing)."""

    def __init__(self, index: int, model: SenderModel) -> None:
        self.index = index
        self.model = model
        self.draws = Draws(model)
        self.time = 0.0
        self.running = True  # not yet done, dead or stopped
        self.took = False
        self.vanishes = False
        self.hung = False  # claims what it takes, then says nothing more (a sender that hangs mid-send)

    def take(self, item: Work) -> list[Event]:
        if isinstance(item, Stop):
            return self.leave()
        if self.vanishes:  # killed between taking it and saying so: the batch goes with it
            self.running = False
            return [(self.index, Exited(self.index, False, "SIGKILL"))]
        claimed: list[Event] = [(self.index, Claimed(self.index, item.key))]
        return claimed if self.hung else [*claimed, (self.index, self._send_all(item))]

    def _send_all(self, batch: MessageBatch) -> Progress:
        stats, outcomes, retries = Stats(), bytearray(), []
        phones = batch.phones()
        for offset in range(len(batch)):
            seconds, failed = self.draws.take()
            self.time = max(self.time, batch.available_at(offset)) + seconds
            attempt = batch.attempt(offset)
            outcome = self.model.outcome(attempt, failed)
            stats.record(seconds, not failed, ended_at=self.time)
            outcomes.append(outcome)
            if outcome == RETRY:
                back_at = self.time + self.model.retry_delay(attempt)
                retries.append((batch.ids[offset], phones[offset], batch.entry(offset) + 1, back_at))
        done = (Done(batch.key, range(len(batch)), bytes(outcomes)),)
        return Progress(self.index, done, stats, tuple(retries))

    def leave(self) -> list[Event]:
        self.running = False
        return [(self.index, SenderDone(self.index)), (self.index, Exited(self.index, True, "exit status 0"))]


class MemoryBackend:
    tracks_claims = True
    open_membership = False
    stop_grace = 0.0
    drain_limit = None
    run_id = None
    join_hint = ""

    def __init__(self, settings: Settings, source: MessageSource, capacity: int = 16) -> None:
        self.settings = settings
        self.capacity = capacity
        self.queue: deque[Work] = deque()
        self.batches: Iterator[MessageBatch] | None = None  # the producer, until it is done
        self.source = source
        self.produced = 0
        self.senders = [FakeSender(i, SenderModel(spec, settings, i)) for i, spec in enumerate(settings.senders)]
        self.said: list[Event] = []  # to be delivered by the next events()
        self.started = False
        self.stopping = False

    def begin(self) -> None:
        self.batches = self.source.batches()
        self._produce()
        self.said += [(PRODUCER, Ready(PRODUCER))] + [(s.index, Ready(s.index)) for s in self.senders]

    def start_clock(self, start: float) -> None:
        self.started = True

    def offer(self, item: Work) -> bool:
        if len(self.queue) >= self.capacity:
            return False
        self.queue.append(item)
        return True

    def announce(self, phase: Phase) -> None:
        if phase in (Phase.WARM, Phase.COLD):
            self.stopping = True

    def events(self, timeout: float) -> list[Event]:
        """One turn: the producer fills the queue, then each running sender in
        turn takes one item (or leaves, if a stop was asked for)."""
        self._produce()
        for sender in self.senders:
            if not (sender.running and self.started) or (sender.hung and sender.took):
                continue
            if self.stopping:
                self.said += sender.leave()
            elif self.queue:
                self.said += sender.take(self.queue.popleft())
                sender.took = True
        said, self.said = self.said, []
        return said

    def _produce(self) -> None:
        while self.batches is not None and len(self.queue) < self.capacity:
            batch = next(self.batches, None)
            if batch is None or self.stopping:
                self.batches = None
                if batch is None:
                    self.said.append((PRODUCER, ProducerDone(self.source.batch_count, self.produced)))
                self.said.append((PRODUCER, Exited(PRODUCER, True, "exit status 0")))
                return
            self.queue.append(batch)
            self.produced += len(batch)

    def hang(self, sender: int) -> None:
        """From now on that sender takes one more item and then is silent."""
        self.senders[sender].hung = True
        self.senders[sender].took = False

    def vanish(self, sender: int) -> None:
        """That sender dies with the next item it takes, before it can claim it."""
        self.senders[sender].vanishes = True

    def waits_on(self, sender: int) -> bool:
        return False

    def end(self, sender: int) -> bool:
        """Kill it: it says nothing more, and its exit is the next thing heard of it."""
        if self.senders[sender].running:
            self.senders[sender].running = False
            self.said.append((sender, Exited(sender, False, "SIGKILL")))
        return True

    def end_all(self) -> None:
        for sender in self.senders:
            self.end(sender.index)

    def children_running(self) -> bool:
        return any(sender.running for sender in self.senders) or any(
            isinstance(event, Exited) for _, event in self.said
        )

    def close(self) -> list[Event]:
        self.end_all()
        said, self.said = [e for e in self.said if not isinstance(e[1], Exited)], []
        return said
