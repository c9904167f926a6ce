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
import json
import secrets
import time
from dataclasses import dataclass, field

import redis

from smsbatch.broker.streams import (
    BEAT_SECONDS,
    DONE,
    ENDED_TTL,
    GROUP,
    RUNNING,
    RUNS_KEY,
    STOPPING,
    BrokerDown,
    Patient,
    RunGone,
    RunKeys,
    StreamProducer,
    batch_fields,
    connect,
    consumer_name,
    decode_ids,
    decode_outcomes,
    report_fields,
    run_info,
    run_ttl,
    spec_from_json,
    stats_from_json,
)
from smsbatch.broker.worker import run_stream_sender
from smsbatch.config import SenderSpec
from smsbatch.core.model import MessageBatch, Stop
from smsbatch.core.stats import Stats
from smsbatch.core.text import plural, redact_url
from smsbatch.core.timeline import RunRecord
from smsbatch.present.monitor import SenderView
from smsbatch.realtime.children import RunStart, StopSignal
from smsbatch.realtime.producer import run_producer
from smsbatch.realtime.runner import OUTCOME_WORDS, WARM_STOP_SECONDS, Child, Runner, message_log

READ_COUNT = 1000  # result entries per XREAD
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
        fields = (
            {"stop": "1"}
            if isinstance(item, Stop)
            else batch_fields(item.ids, item.numbers, item.attempts, item.available)
        )
        self.runner.call(self.runner.client.xadd, self.runner.keys.work, fields)
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
        self.url = self.settings.broker
        self.keys = RunKeys(self.run_id)
        self.ttl = run_ttl(self.settings.broker_timeout)
        self.client = connect(self.url)
        self.call = Patient(
            self.url,
            self.settings.broker_timeout,
            self._note,
            give_up=lambda: bool(self.signals),
            back=self._forgive_silence,
        )
        self.slots: list[Slot] = []
        self.slot_of: dict[str, int] = {}  # consumer name -> index in slots
        self.last_read = "0-0"
        self.next_beat = 0.0
        self.broker_gone = False
        self.waiting_noted = False
        self.record = RunRecord([], self.record.timeline.width, self.settings.deadline)  # senders come as they join

    def _note(self, text: str) -> None:
        self.monitor.note(f"smsbatch: {text}")

    # ---- start ----

    def _start_children(self) -> None:
        self.call(self._create_run)
        self.transport = _WorkStream(self)
        self.stop_signal = StopSignal()
        self.run_start = RunStart(self.ctx)  # set with the rest; senders read the start from Redis
        gc.freeze()  # see Runner._start_children
        for index, spec in enumerate(self.settings.senders):
            sender = consumer_name(index)
            self._add_slot(sender, spec.name, spec, local=True)
            self._spawn(
                spec.name,
                index,
                run_stream_sender,
                (index, sender, spec.name, self.settings, self.url, self.keys, True),
            )
        producer = StreamProducer(self.url, self.keys, self.settings.broker_timeout)
        self._spawn("producer", -1, run_producer, (self.source, producer))

    def _start_sim(self) -> None:
        """Simulated time 0 for every sender of the run, here and elsewhere: in
        Redis, as wall-clock time, since monotonic clocks differ between machines."""
        super()._start_sim()
        wall_start = time.time() - (self.clock.now() - self.sim.start)
        self.call(self.client.set, self.keys.start, repr(wall_start), ex=self.ttl)

    def _create_run(self) -> None:
        pipe = self.client.pipeline(transaction=True)  # made here: a failed pipeline is emptied
        pipe.set(self.keys.state, RUNNING, ex=self.ttl)
        pipe.set(self.keys.info, run_info(self.settings), ex=self.ttl)
        pipe.xgroup_create(self.keys.work, GROUP, id="0", mkstream=True)
        pipe.xadd(self.keys.results, report_fields("start", ""))
        pipe.expire(self.keys.work, self.ttl)
        pipe.expire(self.keys.results, self.ttl)
        pipe.zadd(RUNS_KEY, {self.run_id: time.time()})
        pipe.execute()

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
        answer = self.call(self.client.xread, {self.keys.results: self.last_read}, count=READ_COUNT, block=block)
        if not answer or not answer[0][1]:
            return False
        for entry_id, fields in answer[0][1]:
            self._report(json.loads(fields[b"r"]))
            self.last_read = entry_id
        # Read: trim it, so the stream stays short however long the run.
        self.call(self.client.xtrim, self.keys.results, minid=self.last_read, approximate=False)
        return True

    def _report(self, report: dict) -> None:
        kind, sender = report["t"], report["s"]
        if kind == "start":
            return
        self.last_movement = self.clock.now()
        index = self.slot_of.get(sender)
        if index is None:  # a sender elsewhere, joining (its hello comes first)
            if kind == "hello":
                name, spec, where = report["name"], spec_from_json(report["spec"]), report["host"]
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
        if kind == "hello":
            slot.state = "running"
        if kind == "progress":
            self._stream_progress(index, slot, report)
        elif kind == "bye":
            self._bye(index, slot, report)

    def _stream_progress(self, index: int, slot: Slot, report: dict) -> None:
        slot.stats.merge(stats_from_json(report["st"]))
        for ids, outcomes in report["d"]:
            self.ledger.record(decode_ids(ids), decode_outcomes(outcomes))
        for message_id, phone, attempt, back_at in report["r"]:
            if self.ledger.retry(message_id, attempt) and self.phase == "running":
                heapq.heappush(self.retry_heap, (back_at, message_id, phone, attempt))
        self.record.record(index, report["en"], report["cp"], report["lg"])
        self.redelivered += report["rd"]
        for message_id, phone, outcome, seconds, attempt in report["l"]:
            message_log.info(
                "message %d to %s %s by %s in %.3fs (attempt %d)",
                message_id,
                phone,
                OUTCOME_WORDS[outcome],
                slot.name,
                seconds,
                attempt,
            )

    def _bye(self, index: int, slot: Slot, report: dict) -> None:
        self.live.discard(index)
        given_back = report["given_back"]
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
        if not self.call(self._renew_keys):
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

    def _renew_keys(self) -> bool:
        """Keep the run's keys alive (they expire if we die); False if they are gone."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys.all():
            pipe.expire(key, self.ttl)
        pipe.exists(self.keys.state)
        return bool(pipe.execute()[-1])

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
        if not self.call(self._renew_keys):  # it found the run gone from Redis: that is the news
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
        self.call(self.client.set, self.keys.state, DONE, ex=self.ttl)  # for senders between reads
        super()._send_stops()
        self.deadline = min(self.deadline, self.clock.now() + WARM_STOP_SECONDS + BEAT_SECONDS)

    def _warm_stop(self, reason: str) -> None:
        super()._warm_stop(reason)
        self.deadline += BEAT_SECONDS  # senders elsewhere hear of it within a beat
        if not self.broker_gone:
            self.call(self.client.set, self.keys.state, STOPPING, ex=self.ttl)

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
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self.keys.state, DONE)
            for key in self.keys.all():
                pipe.expire(key, ENDED_TTL)
            pipe.zrem(RUNS_KEY, self.run_id)
            pipe.execute()
        except (redis.RedisError, BrokerDown):
            pass  # the keys expire on their own anyway

    # ---- what the monitor sees ----

    def _sender_views(self) -> tuple[SenderView, ...]:
        return tuple(
            SenderView(s.name, s.spec, s.stats, s.state, self.record.capped[i]) for i, s in enumerate(self.slots)
        )
