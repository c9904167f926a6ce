"""The one-machine backend: a producer and the senders as processes of this
machine, joined by a bounded queue (local/transport.py), each reporting on its
own pipe (realtime/supervisor.py). It plugs into the runner as a Backend
(realtime/backend.py).
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Iterable

from smsbatch.core.model import ProducerDone
from smsbatch.core.sender_model import account_caps, needs_numpy
from smsbatch.core.settings import Settings
from smsbatch.core.source import MessageSource
from smsbatch.local.transport import LocalSenderPorts, LocalTransport
from smsbatch.realtime.backend import PRODUCER, Exited, Note, Phase, Work
from smsbatch.realtime.children import RunStart
from smsbatch.realtime.producer import run_producer
from smsbatch.realtime.sender import run_sender
from smsbatch.realtime.supervisor import Event, Supervisor


class LocalBackend:
    tracks_claims = True
    open_membership = False
    stop_grace = 0.0
    drain_limit = None
    run_id = None
    join_hint = ""

    def __init__(self, settings: Settings, source: MessageSource) -> None:
        self.settings = settings
        self.source = source
        ctx = multiprocessing.get_context("fork")  # fast start; children need no re-import
        gaps = {name: pacer.gap for name, pacer in account_caps(settings).items()}
        self.transport = LocalTransport(ctx, len(settings.senders), gaps)
        self.run_start = RunStart(ctx)
        self.supervisor = Supervisor(ctx)
        self.producer_done = False
        self.stopping = False

    def begin(self) -> None:
        if needs_numpy(self.settings):
            import numpy  # noqa: F401  (loaded once here, so that no forked sender loads it again)
        # Objects made so far are shared with every child: keep the children's
        # garbage collector off them, or each child copies most of its memory.
        gc.freeze()
        # Senders first: they wait idle until the producer starts, instead of
        # working and taking the CPU from the main process while it forks the rest.
        for index, spec in enumerate(self.settings.senders):
            ports = LocalSenderPorts(self.transport, self.run_start, index)
            self.supervisor.spawn(spec.name, index, run_sender, (index, f"sender {index + 1}", self.settings, ports))
        self.supervisor.spawn("producer", PRODUCER, run_producer, (self.source, self.transport))

    def start_clock(self, start: float) -> None:
        self.run_start.set(start)

    # ---- work ----

    def offer(self, item: Work) -> bool:
        return self.transport.offer(item)

    def announce(self, phase: Phase) -> None:
        if phase in (Phase.WARM, Phase.COLD):  # draining needs nothing: the Stops are on the queue
            self.stopping = True
            self.supervisor.stop_signal.set()

    # ---- reports ----

    def events(self, timeout: float) -> list[Event]:
        found: list[Event] = []
        for index, event in self.supervisor.events(timeout):
            if isinstance(event, ProducerDone):
                self.producer_done = True
            if isinstance(event, Exited) and not event.clean:
                found.extend(self._mend(index, event))
            else:
                found.append((index, event))
        return found

    def _mend(self, index: int, exited: Exited) -> list[Event]:
        """A child died: make good what it may have left behind."""
        if index == PRODUCER:
            # Did it die mid-write (the queue may hold half a batch)? Only news while it was still producing.
            broken = not (self.producer_done or self.stopping) and self.transport.writer_stuck()
            return [(index, Exited(index, exited.clean, exited.reason, exited.crashed, queue_broken=broken))]
        self.transport.forget(index)  # it waits for nothing now
        mended: list[Event] = [(index, exited)]
        if self.transport.free_lock_of(index):  # it died waiting for work
            name = self.settings.senders[index].name
            mended.append((index, Note(f"{name} died holding the work queue's lock; released it")))
        return mended

    # ---- membership ----

    def waits_on(self, sender: int) -> bool:
        """It holds the queue's read lock, or a place on the waiting board (others give work back for it)."""
        return self.transport.holds_lock(sender) or self.transport.is_waiting(sender)

    def end(self, sender: int) -> bool:
        self.supervisor.kill(sender)
        return True  # its exit follows

    def end_all(self) -> None:
        self.supervisor.kill_all()

    def children_running(self) -> bool:
        return self.supervisor.running()

    def close(self) -> Iterable[Event]:
        said = self.supervisor.close()
        self.transport.close()
        self.run_start.close()
        return said
