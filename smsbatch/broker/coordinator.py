"""The coordinator of a run through Redis Streams (--broker).

The same Runner, with Redis in place of the queue and the report pipes:

    producer (Process) --XADD--> smsbatch:R:work --XREADGROUP--> senders here (Processes)
                                  ^      |                        and in workers anywhere
    retries, one Stop per sender  |      +-- XAUTOCLAIM: a silent sender's batches
    (runner: XADD)                |          go to a live one
                                  |
    runner <--XREAD-- smsbatch:R:results <--XADD-- hello, progress, beat, bye
      | Ledger: each message id counted once (deliveries may repeat)
      v
    Monitor

The runner still owns its local children (producer, local senders) and
watches their sentinels; senders elsewhere are known by what they write: a
hello when they join, a beat every second, a bye when they leave. One that is
silent for --claim-after seconds counts as lost, and its batches are taken
over by the others. The end is the same protocol as on one machine: when
every message is counted, the state key says "done" and one Stop per live
sender goes on the work stream.
"""

from __future__ import annotations

import gc
import heapq
import secrets
import time
from dataclasses import dataclass, field

import redis

from smsbatch.broker.codec import Bye, Hello, Opened, Report, StreamProgress, item_fields, report_from, run_info
from smsbatch.broker.keys import BEAT_SECONDS, DONE, STOPPING, RunKeys, consumer_name, run_ttl
from smsbatch.broker.link import StreamSenderPorts
from smsbatch.broker.patient import BrokerDown, Patient, RunGone, connect
from smsbatch.broker.producer import StreamProducer
from smsbatch.broker.store import RunStore
from smsbatch.config import SenderSpec
from smsbatch.core.model import MessageBatch
from smsbatch.core.stats import Stats
from smsbatch.core.text import plural, redact_url
from smsbatch.core.timeline import RunRecord
from smsbatch.present.monitor import SenderView
from smsbatch.realtime.children import RunStart, StopSignal
from smsbatch.realtime.producer import run_producer
from smsbatch.realtime.runner import OUTCOME_WORDS, WARM_STOP_SECONDS, Child, Runner, message_log
from smsbatch.realtime.sender import run_sender

RUN_GONE = "the run's keys are gone from Redis (restarted without its data?)"


def new_run_id() -> str:
    return secrets.token_hex(4)


@dataclass
class Slot:
    """A sender as the coordinator knows it: here, or on another machine."""

    name: str
    spec: SenderSpec
    local: bool
    last_seen: float
    state: str = "starting"
    stats: Stats = field(default_factory=Stats)


class _WorkStream:
    """The runner's side of the work stream (the transport interface of transport.py)."""

    def __init__(self, runner: StreamRunner) -> None:
        self.runner = runner

    def report_channel(self):
        """Local children still have a pipe: for a crash's traceback, and so
        that their death reads as end-of-file at once."""
        return self.runner.ctx.Pipe(duplex=False)

    def offer(self, item) -> bool:
        self.runner.store.add_work(item_fields(item), make_stream=True)
        return True

    def forget(self, sender: int) -> None:
        pass  # senders through Redis post no board

    def holds_lock(self, sender: int) -> bool:
        return False

    def free_lock_of(self, sender: int) -> bool:
        return False  # Redis holds no lock for a sender

    def writer_stuck(self) -> bool:
        return False  # an XADD is whole or absent

    def close(self) -> None:
        pass


@dataclass
class StreamRunner(Runner):
    run_id: str = field(default_factory=new_run_id)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.settings.broker is None:
            raise ValueError("a StreamRunner needs settings.broker")
        self.url = self.settings.broker
        self.keys = RunKeys(self.run_id)
        self.ttl = run_ttl(self.settings.broker_timeout)
        patient = Patient(
            self.url,
            self.settings.broker_timeout,
            self._note,
            give_up=lambda: bool(self.signals),
            back=self._forgive_silence,
        )
        self.store = RunStore(connect(self.url), self.keys, patient)
        self.slots: list[Slot] = []
        self.slot_of: dict[str, int] = {}  # consumer name -> index in slots
        self.last_read: bytes | str = "0-0"  # the last results entry read
        self.next_beat = 0.0
        self.broker_gone = False
        self.waiting_noted = False
        self.record = RunRecord([], self.record.timeline.width, self.settings.deadline)  # senders come as they join

    def _note(self, text: str) -> None:
        self.monitor.note(f"smsbatch: {text}")

    # ---- start ----

    def _start_children(self) -> None:
        self.store.create_run(run_info(self.settings), self.ttl)
        self.transport = _WorkStream(self)
        self.stop_signal = StopSignal()
        self.run_start = RunStart(self.ctx)  # set with the rest; senders read the start from Redis
        gc.freeze()  # see Runner._start_children
        for index, spec in enumerate(self.settings.senders):
            sender = consumer_name(index)
            self._add_slot(sender, spec.name, spec, local=True)
            ports = StreamSenderPorts(self.url, self.keys, index, sender, spec.name, self.settings, local=True)
            self._spawn(spec.name, index, run_sender, (index, spec.name, self.settings, ports))
        producer = StreamProducer(self.url, self.keys, self.settings.broker_timeout)
        self._spawn("producer", -1, run_producer, (self.source, producer))

    def _start_sim(self) -> None:
        """Simulated time 0 for every sender of the run, here and elsewhere: in
        Redis, as wall-clock time, since monotonic clocks differ between machines."""
        super()._start_sim()
        wall_start = time.time() - (self.clock.now() - self.sim.start)
        self.store.set_start(wall_start, self.ttl)

    def _add_slot(self, sender: str, name: str, spec: SenderSpec, local: bool) -> int:
        index = len(self.slots)
        self.slots.append(Slot(name, spec, local, self.clock.now()))
        self.slot_of[sender] = index
        self.live.add(index)
        self.record.add_sender(name)
        return index

    # ---- the loop ----

    def _step(self) -> None:
        try:
            super()._step()
        except (BrokerDown, RunGone) as error:
            self._broker_lost(str(error))

    def _wait(self, timeout: float) -> None:
        if self.broker_gone:
            super()._wait(timeout)  # only the local children are left to hear from
            return
        super()._wait(0.0)  # local children: reports and deaths
        self._read_results(timeout)
        self._beat_if_due()

    def _read_results(self, timeout: float | None) -> bool:
        """Handle what the senders wrote (waiting up to `timeout`); False if nothing came."""
        block = None if timeout is None else max(1, int(timeout * 1000))
        entries = self.store.read_results(self.last_read, block)
        if not entries:
            return False
        for entry_id, fields in entries:
            self._report(report_from(fields))
            self.last_read = entry_id
        self.store.trim_results(self.last_read)  # read: the stream stays short however long the run
        return True

    def _report(self, report: Report) -> None:
        if isinstance(report, Opened):
            return
        sender = report.sender
        self.last_movement = self.clock.now()
        index = self.slot_of.get(sender)
        if index is None:  # a sender elsewhere, joining (its hello comes first)
            if isinstance(report, Hello):
                name, spec, where = report.name, report.spec, report.host
            else:
                name, spec, where = sender, SenderSpec(0.0, 0.0, name=sender), "an unknown place"
            index = self._add_slot(sender, name, spec, local=False)
            self._note(f"{name} joined from {where}")
        slot = self.slots[index]
        slot.last_seen = self.clock.now()
        if slot.state.startswith("lost"):  # silent a while, but not dead after all
            self._note(f"{slot.name} is back")
            self.live.add(index)
            slot.state = "running"
        if isinstance(report, Hello):
            slot.state = "running"
        if isinstance(report, StreamProgress):
            self._stream_progress(index, slot, report)
        elif isinstance(report, Bye):
            self._bye(index, slot, report)

    def _stream_progress(self, index: int, slot: Slot, report: StreamProgress) -> None:
        slot.stats.merge(report.stats)
        for ids, outcomes in report.done:
            self.ledger.record(ids, outcomes)
        for message_id, phone, attempt, back_at in report.retries:
            if self.ledger.retry(message_id, attempt) and self.phase == "running":
                heapq.heappush(self.retry_heap, (back_at, message_id, phone, attempt))
        self.record.record(index, report.ended, report.capped, report.lag)
        self.redelivered += report.redelivered
        for message_id, phone, outcome, seconds, attempt in report.log:
            message_log.info(
                "message %d to %s %s by %s in %.3fs (attempt %d)",
                message_id,
                phone,
                OUTCOME_WORDS[outcome],
                slot.name,
                seconds,
                attempt,
            )

    def _bye(self, index: int, slot: Slot, report: Bye) -> None:
        self.live.discard(index)
        given_back = report.given_back
        if self.phase == "running":
            slot.state = f"left (gave back {given_back})"
            self.lost_senders += 1
            self._note(f"{slot.name} left; gave back {plural(given_back, 'message')} it had not started")
        else:
            slot.state = "done"
        child = self._local_child(index)
        if child is not None:
            child.finished = True

    def _local_child(self, index: int) -> Child | None:
        return next((c for c in self.children if c.index == index), None)

    def _beat_if_due(self) -> None:
        """Every second: keep the run's keys alive, check the run is still in
        Redis, and count senders that went silent as lost."""
        now = self.clock.now()
        if now < self.next_beat:
            return
        self.next_beat = now + BEAT_SECONDS
        if not self.store.renew_keys(self.ttl):
            raise RunGone(RUN_GONE)
        for index in list(self.live):
            slot = self.slots[index]
            silent = now - slot.last_seen
            if not slot.local and silent > self.settings.claim_after:
                self.live.discard(index)
                self.lost_senders += 1
                slot.state = f"lost (silent {silent:.0f}s)"
                self._note(f"{slot.name} is silent for {silent:.0f}s: counted lost; its batches go to the others")

    def _forgive_silence(self) -> None:
        """After an outage every sender was silent through no fault of its own."""
        now = self.clock.now()
        for slot in self.slots:
            slot.last_seen = now

    # ---- the runner's decisions, through Redis ----

    def _sender_gone(self, child: Child, how: str, reason: str) -> None:
        slot = self.slots[child.index]
        if child.process.exitcode == 0:  # it said goodbye; the bye is still on its way
            return
        if self.broker_gone:  # it gave up on Redis too: not lost, just cut off
            slot.state = child.state = "stopped (Redis unreachable)"
            return
        slot.state = child.state = f"{how} ({reason})"
        self.lost_senders += 1
        self._note(f"{child.role} {how} ({reason}); its batches go to the others after {self.settings.claim_after:g}s")

    def _producer_died(self, reason: str) -> None:
        if self.broker_gone:  # it gave up on Redis, as the runner did
            return
        if not self.store.renew_keys(self.ttl):  # it found the run gone from Redis: that is the news
            raise RunGone(RUN_GONE)
        super()._producer_died(reason)

    def _put_batch(self, ids, phones, attempts, available) -> None:
        self.pending_puts.append(MessageBatch.of(0, tuple(ids), phones, "", tuple(attempts), tuple(available)))

    def _no_senders_left(self) -> None:
        if not self.waiting_noted:
            self.waiting_noted = True
            self._note(
                f"no sender is running: waiting for one to join "
                f"(smsbatch worker --broker {redact_url(self.url)}); Ctrl-C stops the run"
            )

    def _stalled(self) -> bool:
        return False  # a silent sender's batches are taken over through Redis

    def _end_silent_senders(self) -> None:
        pass  # senders here report through Redis, and a silent one is handled there (_beat_if_due)

    def _send_stops(self) -> None:
        self.store.set_state(DONE, self.ttl)  # for senders between reads
        super()._send_stops()
        self.deadline = min(self.deadline, self.clock.now() + WARM_STOP_SECONDS + BEAT_SECONDS)

    def _warm_stop(self, reason: str) -> None:
        super()._warm_stop(reason)
        self.deadline += BEAT_SECONDS  # senders elsewhere hear of it within a beat
        if not self.broker_gone:
            self.store.set_state(STOPPING, self.ttl)

    def _broker_lost(self, reason: str) -> None:
        self.broker_gone = True
        self.pending_puts.clear()
        if self.stopped_by == "completed":
            self.stopped_by = reason
        self._note(f"{reason}; stopping with what is known")
        self.stop_signal.set()
        if self.phase == "running":
            self.phase = "warm"
            self.deadline = self.clock.now() + WARM_STOP_SECONDS

    def _over(self) -> bool:
        if self.phase == "running":
            return False
        if any(not c.exited for c in self.children if c.index >= 0):
            return False
        return not self.live or self.phase == "cold" or self.broker_gone

    def _shutdown(self) -> None:
        super()._shutdown()  # every local child has exited: what they wrote is all there
        if self.broker_gone:
            return
        try:
            while self._read_results(None):  # drain: the last reports and goodbyes
                pass
            self.store.end_run()
        except (redis.RedisError, BrokerDown):
            pass  # the keys expire on their own anyway

    # ---- what the monitor sees ----

    def _sender_views(self) -> tuple[SenderView, ...]:
        return tuple(
            SenderView(s.name, s.spec, s.stats, s.state, self.record.capped[i]) for i, s in enumerate(self.slots)
        )
