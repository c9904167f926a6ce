"""The Redis backend: the coordinator's side of a run through Redis Streams (--broker).

The one runner (realtime/runner.py), with Redis in place of the queue and the
report pipes:

    producer (Process) --XADD--> smsbatch:R:work --XREADGROUP--> senders here (Processes)
                                  ^      |                        and in workers anywhere
    retries, one Stop per sender  |      +-- XAUTOCLAIM: a silent sender's batches
    (offer: XADD)                 |          go to a live one
                                  |
    events() <--XREAD-- smsbatch:R:results <--XADD-- hello, progress, beat, bye
      | decoded into the model's reports: Joined, Progress (by message id),
      v Beat, SenderDone(given_back)
    Runner

The coordinator still runs its local children (the producer, its own
senders) under a Supervisor and watches their sentinels; senders elsewhere are
known by what they write: a hello when they join, a beat every second, a bye
when they leave. The runner counts one that is silent for --claim-after
seconds as lost; Redis redelivers its batches to the others (XAUTOCLAIM), so
the runner tracks no claims. Every Redis command is in store.py.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import redis

from smsbatch.broker.codec import Alive, Bye, Hello, Opened, Report, StreamProgress, item_fields, report_from, run_info
from smsbatch.broker.keys import BEAT_SECONDS, DONE, STOPPING, RunKeys, consumer_name, run_ttl
from smsbatch.broker.link import StreamSenderPorts
from smsbatch.broker.patient import Patient, RunGone, connect
from smsbatch.broker.producer import StreamProducer
from smsbatch.broker.store import READ_COUNT, RunStore
from smsbatch.core.clock import Clock
from smsbatch.core.model import Beat, Done, ProducerDone, Progress, SenderDone, TransportLost
from smsbatch.core.settings import SenderSpec, Settings
from smsbatch.core.source import MessageSource
from smsbatch.core.text import redact_url
from smsbatch.realtime.backend import NOBODY, PRODUCER, Exited, Joined, Note, Phase, Resumed, Work
from smsbatch.realtime.producer import run_producer
from smsbatch.realtime.sender import run_sender
from smsbatch.realtime.stopping import WARM_STOP_SECONDS
from smsbatch.realtime.supervisor import Event, Supervisor

MAX_PAGES = 50  # result pages (READ_COUNT reports each) read in one look, when they keep coming full
RUN_GONE = "the run's keys are gone from Redis (restarted without its data?)"

P = ParamSpec("P")
R = TypeVar("R")


def _marks_gone(method: Callable[P, R]) -> Callable[P, R]:
    """A lost transport is news once: after it, the backend asks Redis nothing more."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except TransportLost:
            args[0].gone = True  # type: ignore[attr-defined]  # args[0] is the RedisBackend
            raise

    return guarded


class RedisBackend:
    tracks_claims = False  # Redis redelivers a lost sender's batches (XAUTOCLAIM)
    open_membership = True  # workers join at any time
    stop_grace = BEAT_SECONDS  # senders elsewhere hear of a stop within a beat
    drain_limit = WARM_STOP_SECONDS + BEAT_SECONDS  # a sender elsewhere may vanish without its bye

    def __init__(
        self,
        settings: Settings,
        source: MessageSource,
        run_id: str,
        give_up: Callable[[], bool],
        clock: Clock | None = None,
    ) -> None:
        assert settings.broker is not None
        self.settings, self.source, self.run_id = settings, source, run_id
        self.clock = clock or Clock()
        self.url = settings.broker
        self.join_hint = f" (smsbatch worker --broker {redact_url(self.url)})"
        self.keys = RunKeys(run_id)
        self.ttl = run_ttl(settings.broker_timeout)
        self.said: list[Event] = []  # notes and resumptions from the patient caller
        patient = Patient(self.url, settings.broker_timeout, self._say, give_up=give_up, back=self._resumed)
        self.store = RunStore(connect(self.url), self.keys, patient)
        self.supervisor = Supervisor(multiprocessing.get_context("fork"))
        self.index_of = {consumer_name(i): i for i in range(len(settings.senders))}  # consumer -> sender index
        self.last_read: bytes | str = "0-0"  # the last results entry read
        self.next_beat = 0.0
        self.producer_done = False
        self.gone = False

    def _say(self, text: str) -> None:
        self.said.append((NOBODY, Note(text)))

    def _resumed(self) -> None:
        self.said.append((NOBODY, Resumed()))

    # ---- start ----

    @_marks_gone
    def begin(self) -> None:
        self.store.create_run(run_info(self.settings), self.ttl)
        gc.freeze()  # see LocalBackend.begin
        for index, spec in enumerate(self.settings.senders):
            ports = StreamSenderPorts(
                self.url, self.keys, index, consumer_name(index), spec.name, self.settings, local=True
            )
            self.supervisor.spawn(spec.name, index, run_sender, (index, spec.name, self.settings, ports))
        producer = StreamProducer(self.url, self.keys, self.settings.broker_timeout)
        self.supervisor.spawn("producer", PRODUCER, run_producer, (self.source, producer))

    @_marks_gone
    def start_clock(self, start: float) -> None:
        """Simulated time 0 for every sender of the run, here and elsewhere: in
        Redis, as wall-clock time, since monotonic clocks differ between machines."""
        self.store.set_start(time.time() - (self.clock.now() - start), self.ttl)

    # ---- work ----

    @_marks_gone
    def offer(self, item: Work) -> bool:
        if not self.store.add_work(item_fields(item)):
            raise RunGone(RUN_GONE)  # no stream to add to: a batch must not vanish unsaid
        return True  # the producer keeps the stream short; the runner's own puts are few

    @_marks_gone
    def announce(self, phase: Phase) -> None:
        if phase in (Phase.WARM, Phase.COLD):
            self.supervisor.stop_signal.set()
        if not self.gone:  # senders elsewhere read the state at every beat
            self.store.set_state(DONE if phase == Phase.DRAINING else STOPPING, self.ttl)

    # ---- reports ----

    @_marks_gone
    def events(self, timeout: float) -> list[Event]:
        """Everything read is delivered, also when Redis fails midway: it stays
        in `said` for the next call (the results read are trimmed from Redis, and
        an exit's sentinel is read once)."""
        self._take_local(self.supervisor.events(0.0 if not self.gone else timeout))
        if not self.gone:
            self._read_results(timeout)
            self._beat_if_due()
        found, self.said = self.said, []
        return found

    def _take_local(self, events: list[Event]) -> None:
        """What the local children said and how they ended."""
        producer_lost = False
        for index, event in events:
            if isinstance(event, ProducerDone):
                self.producer_done = True
            elif isinstance(event, Exited) and index == PRODUCER and not event.clean:
                producer_lost = not self.producer_done
            self.said.append((index, event))
        if producer_lost and not self.gone and not self.store.renew_keys(self.ttl):
            raise RunGone(RUN_GONE)  # it found the run gone from Redis: that is the news

    def _read_results(self, timeout: float | None) -> bool:
        """What the senders wrote, into `said` (waiting up to `timeout`; None: not
        at all); False if nothing came."""
        block = None if timeout is None else max(1, int(timeout * 1000))
        entries = self.store.read_results(self.last_read, block)
        pages = 1
        while len(entries) >= READ_COUNT * pages and pages < MAX_PAGES:
            # A full page: more may wait, sent before this look. Read them now,
            # or a sender whose word is on the next page would look silent.
            entries += self.store.read_results(entries[-1][0], None)
            pages += 1
        for entry_id, fields in entries:
            self.said += self._decoded(report_from(fields))
            self.last_read = entry_id
        if entries:
            self.store.trim_results(self.last_read)  # read: the stream stays short however long the run
        return bool(entries)

    def _decoded(self, report: Report) -> list[Event]:
        """A report from Redis as the model's report, from sender `index`."""
        if isinstance(report, Opened):
            return []
        found: list[Event] = []
        index = self.index_of.get(report.sender)
        if index is None:  # a sender elsewhere, joining (its hello comes first)
            index = self.index_of[report.sender] = len(self.index_of)
            found.append((index, _joined(index, report)))
        if isinstance(report, StreamProgress):
            found.append((index, _progress(index, report)))
        elif isinstance(report, Bye):
            found.append((index, SenderDone(index, report.given_back)))
        elif isinstance(report, Alive | Hello):
            found.append((index, Beat(index)))
        return found

    def _beat_if_due(self) -> None:
        """Every second: keep the run's keys alive, and check the run is still in Redis."""
        now = self.clock.now()
        if now < self.next_beat:
            return
        self.next_beat = now + BEAT_SECONDS
        if not self.store.renew_keys(self.ttl):
            raise RunGone(RUN_GONE)

    # ---- membership ----

    def waits_on(self, sender: int) -> bool:
        """A sender elsewhere that goes silent is counted lost (Redis hands its
        batches to the others). One of ours is watched through its process: after
        an outage its reconnect may lag its silence, and killing it would lose a
        sender that is fine."""
        return sender >= len(self.settings.senders)

    def end(self, sender: int) -> bool:
        """A local sender is killed (its exit follows); one elsewhere is just counted lost."""
        if sender >= len(self.settings.senders):
            return False
        self.supervisor.kill(sender)
        return True

    def end_all(self) -> None:
        self.supervisor.kill_all()

    def children_running(self) -> bool:
        return self.supervisor.running()

    def close(self) -> list[Event]:
        self.said += [(i, e) for i, e in self.supervisor.close() if not isinstance(e, Exited)]
        if not self.gone:
            try:
                while self._read_results(None):  # the last reports and goodbyes
                    pass
                self.store.end_run()
            except (redis.RedisError, TransportLost):
                pass  # the keys expire on their own anyway
        said, self.said = self.said, []
        return said


def _joined(index: int, report: Report) -> Joined:
    if isinstance(report, Hello):
        return Joined(index, report.name, report.spec, report.host)
    return Joined(index, report.sender, SenderSpec(0.0, 0.0, name=report.sender), "an unknown place")


def _progress(index: int, report: StreamProgress) -> Progress:
    return Progress(
        index,
        tuple(Done(None, ids, outcomes) for ids, outcomes in report.done),
        report.stats,
        tuple(report.retries),
        tuple(report.log),
        tuple(report.ended),
        report.lag,
        report.capped,
        report.redelivered,
        receipts=tuple((time, kind) for time, kind in report.receipts),
    )
