"""A sender's side of a run through Redis.

SenderLink holds what one sender took from the work stream and turns the
SenderEngine's reports into results. StreamSenderPort is the SenderPort
(realtime/sender.py) a sender process works through: the link, announced with
a hello, kept alive by a beat while the engine pauses.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from smsbatch.broker.codec import (
    Alive,
    Bye,
    Hello,
    Ids,
    StreamProgress,
    batch_from,
    part_fields,
    report_fields,
)
from smsbatch.broker.keys import BEAT_SECONDS, RUNNING, RunKeys
from smsbatch.broker.patient import Patient, RunGone, connect
from smsbatch.broker.store import Entry, RunStore
from smsbatch.core.batching import share_for
from smsbatch.core.ledger import Claim
from smsbatch.core.model import Done, MessageBatch, Progress, Ready, Released, SenderDone, Stop
from smsbatch.core.sender_model import Pacer
from smsbatch.core.settings import SenderSpec, Settings
from smsbatch.core.text import sms_segments
from smsbatch.realtime.children import stderr_line

START_POLL_SECONDS = 0.05  # how often a sender looks for the run's start


class SenderLink:
    """One sender's connection to a run: the take and report functions the
    SenderEngine is given, over Redis instead of a queue and a pipe."""

    def __init__(
        self,
        store: RunStore,
        sender: str,
        text: str,
        claim_after: float,
        share: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.sender = sender  # its consumer name
        self.text = text
        self.share = share  # messages to hold at once (see batching.share_for)
        self.claim_after_ms = int(claim_after * 1000)
        self.beat_seconds = min(BEAT_SECONDS, claim_after / 4)
        self.clock = clock
        self.held: dict[int, tuple[bytes, MessageBatch, Claim]] = {}  # key -> (entry id, batch, claim)
        self.next_key = 0
        self.next_beat = 0.0
        self.next_reclaim = 0.0
        self.reclaim_from: bytes | str = "0-0"
        self.over = False  # the run is over, or stopping: leave
        self.redelivered = 0  # messages taken over from silent senders, not yet reported

    def hello(self, name: str, spec: SenderSpec) -> None:
        self.store.add_report(report_fields(Hello(self.sender, name, spec, socket.gethostname())))

    def wait_for_start(self, stopping: Callable[[], bool], poll: float = START_POLL_SECONDS) -> float | None:
        """The run's simulated time 0 on this machine's monotonic clock (set by the
        coordinator once its children are ready; a sender joining later reads it at
        once); None if it stops waiting. Machines' clocks are taken to agree (NTP)."""
        while not stopping():
            wall = self.store.read_start()
            if wall is not None:
                return time.monotonic() - (time.time() - wall)
            self.beat_if_due()  # a run that ended (or whose coordinator died) before its start: leave
            if self.over:
                return None
            time.sleep(poll)
        return None

    # ---- take ----

    def take(self, timeout: float) -> MessageBatch | Stop | None:
        self.beat_if_due()
        if self.over:
            return None
        try:
            entry = self._reclaim_if_due()
            reclaimed = entry is not None
            entry = entry or self._read(timeout)
        except RunGone:  # its keys expired: the coordinator is gone
            self.over = True
            return None
        if entry is None:
            return None
        entry_id, fields = entry
        key, self.next_key = self.next_key, self.next_key + 1
        item = batch_from(key, fields, self.text)
        if isinstance(item, Stop):
            self.store.finish_entries([entry_id])
            return item
        if reclaimed:
            self.redelivered += len(item)
        if len(item) > self.share:
            item = self._keep_share(item)
        self.held[key] = (entry_id, item, Claim(item.ids))
        return item

    def _keep_share(self, batch: MessageBatch) -> MessageBatch:
        """Keep what this sender will get through soon, and put the rest back
        as a new batch for any sender: batches are sized for the coordinator's
        senders, and a slow sender elsewhere must not sit on a thousand
        messages. The entry is acknowledged when the part kept is done; if this
        sender dies first, the whole entry comes round again, and the part
        given back is then sent twice and counted once."""
        self.store.add_work(part_fields(batch, range(self.share, len(batch))))
        return batch.part(range(self.share))

    def _read(self, timeout: float) -> Entry | None:
        timeout = min(timeout, self.beat_seconds)  # back in time for the next beat
        return self.store.read_work(self.sender, max(1, int(timeout * 1000)) if timeout > 0 else None)

    def _reclaim_if_due(self) -> Entry | None:
        """Take over one batch that a silent sender has held too long. Having
        found one, look again at the next take, not a beat later: a dead worker
        holds tens of batches, and taking one a beat made their redelivery
        last 5 to 20 s (an entry is claimable only when its holder has not
        renewed it for --claim-after, so this takes only abandoned work)."""
        now = self.clock()
        if now < self.next_reclaim:
            return None
        self.reclaim_from, entry = self.store.reclaim(self.sender, self.claim_after_ms, self.reclaim_from)
        self.next_reclaim = now if entry is not None else now + self.beat_seconds
        return entry

    # ---- keep alive ----

    def beat_if_due(self) -> None:
        """Every beat: renew the claims on what this sender holds, tell the
        coordinator it is alive, and read the run's state."""
        now = self.clock()
        if now < self.next_beat:
            return
        self.next_beat = now + self.beat_seconds
        held = [entry for entry, _, _ in self.held.values()]
        try:
            state = self.store.beat(self.sender, held, report_fields(Alive(self.sender)))
        except RunGone:
            state = None
        if state != RUNNING:  # over, stopping, or expired (the coordinator is gone)
            self.over = True

    # ---- report ----

    def report(self, item: object) -> None:
        if isinstance(item, Progress):
            self._progress(item)
        elif isinstance(item, SenderDone):
            self._leave()
        elif isinstance(item, Released):
            self._give_back(item)
        # Claimed: the consumer group already knows who holds what. Beat: beat_if_due speaks for it.

    def _give_back(self, released: Released) -> None:
        """Part of a batch this sender will not start soon goes back on the work
        stream as a new batch; the entry is acknowledged once the rest is done."""
        entry, batch, claim = self.held[released.key]
        claim.mark(released.offsets)
        finished = []
        if claim.remaining == 0:
            del self.held[released.key]
            finished = [entry]
        self.store.give_back(part_fields(batch, released.offsets), finished)

    def _progress(self, progress: Progress) -> None:
        done = [self._done_ids(d) for d in progress.done]
        finished = [key for key, (_, _, claim) in self.held.items() if claim.remaining == 0]
        report = StreamProgress(
            self.sender,
            done,
            progress.stats,
            progress.retries,
            progress.log,
            self.redelivered,
            progress.ended,
            progress.lag,
            progress.capped,
            progress.receipts,
        )
        entries = [self.held.pop(key)[0] for key in finished]
        self.store.write_results(report_fields(report), entries)
        self.redelivered = 0

    def _done_ids(self, done: Done) -> tuple[Ids, bytes]:
        """Attempts finished in one batch, by message id (the coordinator counts ids)."""
        assert done.key is not None, "a sender's own reports name the batch"
        _, batch, claim = self.held[done.key]
        offsets = done.offsets
        claim.mark(offsets)
        ids = batch.ids
        if isinstance(offsets, range) and isinstance(ids, range):
            return ids[offsets.start : offsets.stop], done.outcomes
        return tuple(ids[o] for o in offsets), done.outcomes

    def _leave(self) -> None:
        """Give back what was not started, as new batches, and say goodbye."""
        give_back, entries, count = [], [], 0
        for entry, batch, claim in self.held.values():
            offsets = claim.open_offsets()
            entries.append(entry)
            if offsets:
                give_back.append(part_fields(batch, offsets))
                count += len(offsets)
        self.held.clear()
        self.store.write_results(report_fields(Bye(self.sender, count)), entries, give_back)


@dataclass(frozen=True)
class StreamSenderPorts:
    """Makes a sender's StreamSenderPort inside its own process: the Redis
    connection is made there, never inherited through fork."""

    url: str
    keys: RunKeys
    index: int  # in settings.senders
    sender: str  # its consumer name (consumer_name(index) in the process that spawns it)
    name: str
    settings: Settings
    local: bool  # one of the coordinator's own senders
    via: ClassVar[str] = " via Redis"

    def __call__(self, conn, stop_signal) -> StreamSenderPort:
        return StreamSenderPort(self, conn, stop_signal)


class StreamSenderPort:
    """What a sender process works through when its work comes from Redis."""

    def __init__(self, ports: StreamSenderPorts, conn, stop_signal) -> None:
        settings = ports.settings
        self.spec = settings.senders[ports.index]
        self.index, self.name = ports.index, ports.name
        self.conn, self.stop_signal = conn, stop_signal
        self.stopping: Callable[[], bool] = lambda: False  # given by open()
        patient = Patient(ports.url, settings.broker_timeout, stderr_line(ports.name), give_up=lambda: self.stopping())
        store = RunStore(connect(ports.url), ports.keys, patient)
        share = share_for(self.spec, settings.speed, sms_segments(settings.text).count)
        self.link = SenderLink(store, ports.sender, settings.text, settings.claim_after, share)
        # Draws keyed by index, as on one machine; a worker's by its consumer
        # name, so that two workers' senders never make the same draws.
        self.model_key: int | str = ports.index if ports.local else ports.sender

    def open(self, stopping: Callable[[], bool]) -> float | None:
        self.stopping = stopping
        self.link.hello(self.name, self.spec)
        self.conn.send(Ready(self.index))  # the coordinator's own senders: it waits for them
        return self.link.wait_for_start(lambda: stopping() or self.link.over)

    def take(self, timeout: float) -> MessageBatch | Stop | None:
        return self.link.take(timeout)

    def report(self, item: object) -> None:
        self.link.report(item)

    def pause(self, seconds: float) -> None:
        """Wait (less if a stop comes, or a beat is due: the engine looks again)."""
        self.link.beat_if_due()
        self.stop_signal.wait(min(seconds, self.link.beat_seconds))

    def waiting(self, start: float) -> None:
        pass  # senders through Redis post no board

    def sooner_elsewhere(self, batch: MessageBatch, start: float) -> bool:
        return False

    def over(self) -> bool:
        return self.link.over

    def account_caps(self) -> dict[str, Pacer]:
        return {}  # shared accounts are for one machine (--account with --broker is bad input)

    def close(self) -> None:
        self.conn.close()
