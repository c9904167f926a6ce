"""The runner owns every process and queue of a run, from start to shutdown.

Data flow:

    producer --MessageBatch--> work queue --MessageBatch--> sender 1 .. sender N
    (Process)                 (mp.Queue,                    (Processes)
        |                      bounded)                          |
        |                         ^                              | Claimed, Progress,
        |                         | retries, re-queued batches,  | SenderDone, ChildFailed
        |                         | one Stop per sender          | (a report pipe each)
        | ProducerDone            |                              v
        +-----------------------> runner (main process) <--------+
                                   | Ledger: each message counted once
                                   | Stats per sender, merged
                                   v
                                  Monitor (draws every --interval)

The run ends by an explicit protocol, never by looking at an empty queue: when
every message is counted (sent, or failed with no retries left), the runner puts
one Stop per live sender on the work queue, and each answers with SenderDone.
The runner waits on the report pipes and on every child's sentinel at once, so
a child that dies is noticed at once: what it held is re-queued for the others.

The queue and the pipes belong to the transport (transport.LocalTransport);
the runner only offers work, reads reports, and asks the transport to mend
what a dead child left behind.
"""

from __future__ import annotations

import gc
import heapq
import logging
import math
import multiprocessing
import os
import selectors
import signal
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum

from smsbatch.config import Settings
from smsbatch.core.clock import Clock, SimClock
from smsbatch.core.ledger import Ledger
from smsbatch.core.model import (
    FAILED,
    RETRY,
    SENT,
    Beat,
    ChildFailed,
    Claimed,
    MessageBatch,
    ProducerDone,
    Progress,
    Ready,
    Released,
    SenderDone,
    Stop,
)
from smsbatch.core.sender_model import needs_numpy
from smsbatch.core.stats import Stats
from smsbatch.core.timeline import RunRecord, first_width
from smsbatch.local.transport import LocalSenderPorts, LocalTransport
from smsbatch.present.monitor import Monitor, SenderView, Snapshot
from smsbatch.realtime.children import RunStart, StopSignal
from smsbatch.realtime.producer import MessageSource, run_producer
from smsbatch.realtime.sender import run_sender

message_log = logging.getLogger("smsbatch.messages")

TICK_SECONDS = 0.05  # longest wait between looks at signals and deadlines
WARM_STOP_SECONDS = 2.5  # a warm stop waits this long for senders to report, then ends them
STALL_SECONDS = 1.0  # after a death: how long nothing may move before the queue is drained
SILENT_SECONDS = 1.0  # a sender silent this long when it is ended has hung (live ones beat twice a second)
OUTCOME_WORDS = {SENT: "sent", FAILED: "failed", RETRY: "failed, will retry"}


class ExitStatus(IntEnum):
    OK = 0  # every message sent or failed
    UNSENT = 1  # some messages never got a final answer
    USAGE = 2  # bad input; nothing started
    DEADLINE_MISSED = 3  # --require-deadline, and the deadline was missed
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


@dataclass
class Child:
    role: str  # "producer" or "sender N"
    index: int  # sender index, -1 for the producer
    process: multiprocessing.process.BaseProcess
    conn: object  # the read end of its report pipe; None once closed
    finished: bool = False  # sent ProducerDone / SenderDone
    ready: bool = False  # said Ready: simulated time may start
    exited: bool = False
    state: str = "running"
    traceback: str | None = None
    last_heard: float = 0.0  # real time of its last report (every report is a heartbeat)
    silent_for: float | None = None  # set when it was ended for silence


@dataclass
class RunResult:
    snapshot: Snapshot
    exit_status: ExitStatus
    stopped_by: str
    produced: int | None
    startup: float  # real seconds to start every child
    run_id: str | None = None  # the broker's run, when there is one


@dataclass
class Runner:
    settings: Settings
    source: MessageSource
    monitor: Monitor
    clock: Clock = field(default_factory=Clock)
    signals: list[int] = field(default_factory=list)  # SIGINT/SIGTERM received, in order

    def __post_init__(self) -> None:
        self.ctx = multiprocessing.get_context("fork")  # fast start; children need no re-import
        self.ledger = Ledger(self.source.messages)
        self.sender_stats = [Stats() for _ in self.settings.senders]
        self.children: list[Child] = []
        self.live: set[int] = set()  # senders that have neither finished nor exited
        self.selector = selectors.DefaultSelector()
        self.reissued: dict[int, MessageBatch] = {}  # batches the runner made, by key
        self.next_key = -1
        self.retry_heap: list[tuple[float, int, str, int]] = []  # (back in queue at, id, phone, attempt)
        self.pending_puts: list[object] = []  # work the queue had no room for yet
        self.sim = SimClock(self.clock, self.settings.speed)
        self.sim_started = False
        names = [spec.name for spec in self.settings.senders]
        self.record = RunRecord(names, first_width(self.settings, self.source.messages), self.settings.deadline)
        self.sampled_bin = -1  # the timeline bin whose backlog and in-flight were last sampled
        self.next_sample = 0.0  # real time
        self.requeued = 0
        self.redelivered = 0  # messages taken over from silent senders (the broker's re-queue)
        self.lost_senders = 0
        self.produced: int | None = None
        self.producer_done = False
        self.phase = "running"  # running -> draining (Stops sent) | warm | cold
        self.stopped_by = "completed"
        self.deadline = math.inf
        self.last_movement = self.clock.now()
        self.internal_error = False
        self.started = self.clock.now()
        self.startup = 0.0
        self.elapsed: float | None = None  # set when the run is over

    # ---- start ----

    def run(self) -> RunResult:
        self.started = self.clock.now()
        try:
            self._start_children()
            self._wait_until_ready()
            while not self._over():
                self._step()
                self.monitor.tick(self.snapshot)
        except Exception:  # a bug of ours: still stop everything and account for every message
            self.stopped_by = "internal error"
            self.internal_error = True
            self.monitor.note(f"smsbatch: internal error, stopping:\n{traceback.format_exc().rstrip()}")
        finally:
            self._shutdown()
        self.elapsed = self.clock.now() - self.started
        return RunResult(self.snapshot(), self._exit_status(), self.stopped_by, self.produced, self.startup)

    def _wait_until_ready(self) -> None:
        """Simulated time 0 is a barrier: every sender ready and the first batch
        queued. Start-up is real time only; a child that dies meanwhile counts."""
        while self.phase == "running" and not all(c.ready or c.finished or c.exited for c in self.children):
            self._handle_signals()
            self._wait(TICK_SECONDS)
            self._end_silent_senders()  # one that hangs before it is ready must not hold up the start
        self._start_sim()

    def _start_sim(self) -> None:
        start = self.clock.now()
        self.run_start.set(start)
        self.sim = SimClock(self.clock, self.settings.speed, start)
        self.sim_started = True
        self.startup = start - self.started

    def _start_children(self) -> None:
        self.transport = LocalTransport(self.ctx, len(self.settings.senders))
        self.stop_signal = StopSignal()
        self.run_start = RunStart(self.ctx)
        if needs_numpy(self.settings):
            import numpy  # noqa: F401  (loaded once here, so that no forked sender loads it again)
        # Objects made so far are shared with every child: keep the children's
        # garbage collector off them, or each child copies most of its memory.
        gc.freeze()
        # Senders first: they wait idle until the producer starts, instead of
        # working and taking the CPU from the main process while it forks the rest.
        for index in range(len(self.settings.senders)):
            self._spawn(
                self.settings.senders[index].name,
                index,
                run_sender,
                (index, f"sender {index + 1}", self.settings, LocalSenderPorts(self.transport, self.run_start, index)),
            )
        self._spawn("producer", -1, run_producer, (self.source, self.transport))

    def _spawn(self, role: str, index: int, target, args: tuple) -> None:
        reader, writer = self.transport.report_channel()
        process = self.ctx.Process(
            target=target,
            args=(*args, writer, self.stop_signal, os.getpid()),
            name=f"smsbatch {role}",
            daemon=True,
        )
        process.start()
        writer.close()  # so that the child's death reads as end-of-file here
        child = Child(role, index, process, reader, last_heard=self.clock.now())
        self.children.append(child)
        if index >= 0:
            self.live.add(index)
        # One selector for the whole run: waiting costs nothing per child.
        self.selector.register(reader, selectors.EVENT_READ, (self._read, child))
        self.selector.register(process.sentinel, selectors.EVENT_READ, (self._exited, child))

    # ---- the loop ----

    def _step(self) -> None:
        self._handle_signals()
        self._wait(min(TICK_SECONDS, self.monitor.due_in(), self._retry_due_in()))
        self._put_due_retries()
        self._put_pending()
        self._sample_states()
        self._decide()

    def _sample_states(self) -> None:
        """Backlog and sends in flight, once per timeline bin and at most every
        TICK_SECONDS of real time (held by a sender counts as in flight: it is
        sending it or about to); a bin with no sample keeps the one before."""
        if not self.sim_started or self.clock.now() < self.next_sample:
            return
        now = self.sim.now()
        timeline = self.record.timeline
        if int(now / timeline.width) == self.sampled_bin:
            return
        in_flight = [self.ledger.held(index) for index in range(len(timeline.names))]
        timeline.sample(now, self.ledger.unsent - sum(in_flight), in_flight)
        self.sampled_bin = int(now / timeline.width)
        self.next_sample = self.clock.now() + TICK_SECONDS

    def _wait(self, timeout: float) -> None:
        """Wait up to `timeout` for reports and exits, and handle what came."""
        for key, _ in self.selector.select(timeout):
            handle, child = key.data
            handle(child)

    def _read(self, child: Child, limit: int = 1000) -> None:
        for _ in range(limit):
            if child.conn is None:  # closed by its exit, earlier in the same wake-up
                return
            try:
                if not child.conn.poll():
                    return
                report = child.conn.recv()
            except (EOFError, OSError):
                self._close_conn(child)
                return
            self._handle(child, report)

    def _close_conn(self, child: Child) -> None:
        self.selector.unregister(child.conn)
        child.conn.close()
        child.conn = None

    def _handle(self, child: Child, report: object) -> None:
        child.last_heard = self.clock.now()
        if isinstance(report, Beat):
            return  # alive, but nothing moved: the stall check must not count it
        self.last_movement = child.last_heard
        if isinstance(report, Progress):
            self._progress(report)
        elif isinstance(report, Claimed):
            ids = self.source.ids(report.key) if report.key >= 0 else self.reissued[report.key].ids
            self.ledger.claim(report.sender, report.key, ids)
        elif isinstance(report, Released):
            offsets = self.ledger.release_part(report.sender, report.key, report.offsets)
            self._requeue(report.key, offsets, done=report.key not in self.ledger.claims[report.sender])
        elif isinstance(report, Ready):
            child.ready = True
        elif isinstance(report, SenderDone):
            child.finished, child.state = True, "done"
            self.live.discard(child.index)
            if self.phase == "running":
                self._sender_gone(child, "left", "asked to stop")
        elif isinstance(report, ProducerDone):
            child.finished, child.state = True, "done"
            self.producer_done, self.produced = True, report.messages
        elif isinstance(report, ChildFailed):
            child.traceback = report.traceback
            self.monitor.note(f"smsbatch: {report.role} failed:\n{report.traceback.rstrip()}")

    def _progress(self, report: Progress) -> None:
        self.sender_stats[report.sender].merge(report.stats)
        self.record.record(report.sender, report.ended, report.capped, report.lag)
        for done in report.done:
            if self.ledger.apply(report.sender, done) and done.key < 0:
                self.reissued.pop(done.key, None)
        if self.phase == "running":
            for message_id, phone, attempt, back_at in report.retries:
                heapq.heappush(self.retry_heap, (back_at, message_id, phone, attempt))
        if report.log:
            name = self.settings.senders[report.sender].name
            for message_id, phone, outcome, seconds, attempt in report.log:
                message_log.info(
                    "message %d to %s %s by %s in %.3fs (attempt %d)",
                    message_id,
                    phone,
                    OUTCOME_WORDS[outcome],
                    name,
                    seconds,
                    attempt,
                )

    def _exited(self, child: Child) -> None:
        if child.conn is not None:
            self._read(child, limit=10**9)  # everything it said before it went
        child.exited = True
        self.selector.unregister(child.process.sentinel)
        self.live.discard(child.index)
        child.process.join()
        if child.finished:
            return
        if child.index < 0 and self.phase != "running" and child.process.exitcode == 0:
            child.state = "stopped"  # asked to stop before it had made everything
            return
        reason = "exception" if child.traceback else _exit_reason(child.process.exitcode)
        if child.index < 0:
            child.state = f"died ({reason})"
            self._producer_died(reason)
        else:
            if child.silent_for is not None:
                self._sender_gone(child, "lost", f"silent for {child.silent_for:.0f}s")
            else:
                self._sender_gone(child, "died", reason)
            self._free_lock_of_dead_sender(child)
            self.transport.forget(child.index)  # it waits for nothing now

    def _sender_gone(self, child: Child, how: str, reason: str) -> None:
        """A sender died, or left before the end: what it held goes to the others."""
        child.state = f"{how} ({reason})"
        self.lost_senders += 1
        released = self.ledger.release(child.index)
        count = sum(len(offsets) for offsets in released.values())
        if self.phase != "cold":
            for key, offsets in released.items():
                self._requeue(key, offsets)
        self.requeued += count
        self.monitor.note(f"smsbatch: {child.role} {how} ({reason}); {count} in-flight messages re-queued")

    def _free_lock_of_dead_sender(self, child: Child) -> None:
        if self.transport.free_lock_of(child.index):  # it died waiting for work
            self.monitor.note(f"smsbatch: {child.role} died holding the work queue's lock; released it")

    def _producer_died(self, reason: str) -> None:
        self.monitor.note(f"smsbatch: the producer died ({reason}); what it made is sent, the rest counted unsent")
        if self.phase != "running":
            return
        self.stopped_by = "the producer died"
        if self.transport.writer_stuck():
            self._warm_stop("the producer died while writing to the work queue")
        else:
            self._send_stops()  # the queue is whole: send what the producer put

    # ---- work the runner puts back on the queue ----

    def _requeue(self, key: int, offsets: list[int], done: bool = True) -> None:
        """Put messages of batch `key` back on the queue; `done`: no sender
        holds any of that batch any more."""
        if not offsets:
            return
        batch = self.source.batch(key) if key >= 0 else self.reissued.pop(key) if done else self.reissued[key]
        phones = batch.phones()
        self._put_batch(
            [batch.ids[o] for o in offsets],
            [phones[o] for o in offsets],
            [batch.attempt(o) for o in offsets],
            [batch.available_at(o) for o in offsets],
        )

    def _first_attempts_queued(self) -> bool:
        return self.producer_done or any(c.exited for c in self.children if c.index < 0)

    def _retry_due_in(self) -> float:
        if not self.retry_heap or not self._first_attempts_queued():
            return math.inf
        return max(0.0, self.sim.real_delay(self.retry_heap[0][0]))

    def _put_due_retries(self) -> None:
        """Retries due back go on the queue, behind every first attempt (the
        model's FIFO: all first attempts are queued at time 0), so not before
        the producer has queued its last batch."""
        if not self._first_attempts_queued():
            return
        now = self.sim.now()
        due = []
        while self.retry_heap and self.retry_heap[0][0] <= now and len(due) < self.source.batch_size:
            due.append(heapq.heappop(self.retry_heap))
        if due and self.phase == "running":
            self._put_batch([d[1] for d in due], [d[2] for d in due], [d[3] for d in due], [d[0] for d in due])

    def _put_batch(self, ids, phones, attempts, available) -> None:
        key, self.next_key = self.next_key, self.next_key - 1
        batch = MessageBatch.of(key, tuple(ids), phones, self.source.text, tuple(attempts), tuple(available))
        self.reissued[key] = batch
        if max(attempts) > 1:
            self.pending_puts.append(batch)
        else:  # first attempts given back go ahead of retries and stops, as in the model's queue
            first_later = next(
                (i for i, item in enumerate(self.pending_puts) if not _first_attempts(item)), len(self.pending_puts)
            )
            self.pending_puts.insert(first_later, batch)

    def _put_pending(self) -> None:
        while self.pending_puts and self.transport.offer(self.pending_puts[0]):
            self.pending_puts.pop(0)  # what did not fit goes next step

    # ---- ending ----

    def _handle_signals(self) -> None:
        if not self.signals:
            return
        name = signal.Signals(self.signals[-1]).name
        if len(self.signals) >= 2 and self.phase != "cold":
            self.stopped_by = f"{name} twice"
            self._cold_stop()
        elif self.phase in ("running", "draining"):
            self.monitor.note(f"smsbatch: {name}: stopping; press Ctrl-C again to stop at once")
            self._warm_stop(name)

    def _decide(self) -> None:
        self._end_silent_senders()
        if self.phase == "running":
            if self.ledger.final == self.ledger.messages:
                self._send_stops()
            elif not self.live:
                self._no_senders_left()
            elif self._stalled():
                self.stopped_by = "nothing moved after a sender died"
                self._send_stops()  # drain: whatever is still queued gets sent
        if self.clock.now() > self.deadline and self.phase != "cold":
            self._cold_stop()

    def _end_silent_senders(self) -> None:
        """A sender silent for --claim-after real seconds (stopped, deadlocked, or
        on a gateway that never answers: a live one beats every half second, also
        mid-send) is lost if the run waits on it: it holds messages, or the work
        queue's read lock, or the run is ending and waits for its goodbye. It is
        ended (SIGKILL) and its work goes to the others, as a dead one's does."""
        now = self.clock.now()
        for child in self.children:
            if child.index < 0 or child.exited or child.finished or child.silent_for is not None:
                continue
            silent = now - child.last_heard
            if silent > self.settings.claim_after and self._waits_on(child):
                child.silent_for = silent
                self.monitor.note(f"smsbatch: {child.role} is silent for {silent:.0f}s: counted lost, ended")
                child.process.kill()

    def _waits_on(self, child: Child) -> bool:
        """The run needs word from it: before the start, at the end, or while it
        holds messages, the queue's read lock, or a place on the waiting board
        (others give work back for it)."""
        return (
            not self.sim_started
            or self.phase != "running"
            or self.ledger.held(child.index) > 0
            or self.transport.holds_lock(child.index)
            or self.transport.is_waiting(child.index)
        )

    def _no_senders_left(self) -> None:
        self.stopped_by = "every sender died"
        self.stop_signal.set()
        self.phase = "warm"

    def _stalled(self) -> bool:
        return (
            self.lost_senders > 0
            and self.producer_done
            and not self.retry_heap
            and not self.pending_puts
            and self.clock.now() - self.last_movement > STALL_SECONDS
            and not any(self.ledger.held(index) for index in self.live)
        )

    def _send_stops(self) -> None:
        self.phase = "draining"
        self.pending_puts.extend(Stop() for _ in self.live)  # one per sender
        self._put_pending()

    def _warm_stop(self, reason: str) -> None:
        if self.stopped_by == "completed":
            self.stopped_by = reason
        self.stop_signal.set()
        self.phase = "warm"
        self.deadline = self.clock.now() + WARM_STOP_SECONDS

    def _cold_stop(self) -> None:
        self.phase = "cold"
        self.stop_signal.set()
        now = self.clock.now()
        for child in self.children:
            if not child.exited:
                if child.index >= 0 and child.silent_for is None and now - child.last_heard > SILENT_SECONDS:
                    child.silent_for = now - child.last_heard  # hung, not merely slow to stop
                child.process.kill()

    def _over(self) -> bool:
        return self.phase != "running" and not self.live

    def _shutdown(self) -> None:
        """Whatever happened: collect what the children said, and leave none behind."""
        self.stop_signal.set()
        deadline = time.monotonic() + 1.0
        for child in self.children:
            if not child.exited:
                child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            if child.conn is not None:
                self._read(child, limit=10**9)
                if child.conn is not None:
                    self._close_conn(child)
        self.transport.close()
        self.stop_signal.close()
        self.run_start.close()
        self.selector.close()

    def _exit_status(self) -> ExitStatus:
        if self.internal_error:
            return ExitStatus.UNSENT
        if self.signals:
            return ExitStatus.INTERRUPTED if self.signals[0] == signal.SIGINT else ExitStatus.TERMINATED
        return ExitStatus.UNSENT if self.ledger.unsent else ExitStatus.OK

    # ---- what the monitor sees ----

    def _sender_views(self) -> tuple[SenderView, ...]:
        states = {c.index: c.state for c in self.children if c.index >= 0}
        return tuple(
            SenderView(spec.name, spec, self.sender_stats[i], states.get(i, "starting"), self.record.capped[i])
            for i, spec in enumerate(self.settings.senders)
        )

    def snapshot(self) -> Snapshot:
        views = self._sender_views()
        total = Stats()
        for view in views:
            total.merge(view.stats)
        elapsed = self.elapsed if self.elapsed is not None else self.clock.now() - self.started
        if self.elapsed is not None:  # over: the simulated time of the last outcome
            sim_elapsed = max(total.last_end, 0.0)
        else:
            sim_elapsed = self.sim.now() if self.sim_started else 0.0
        return Snapshot(
            messages=self.ledger.messages,
            sent=self.ledger.sent,
            failed=self.ledger.failed,
            retried=self.ledger.retried,
            elapsed=elapsed,
            speed=self.settings.speed,
            stats=total,
            senders=views,
            requeued=self.requeued,
            lost_senders=self.lost_senders,
            redelivered=self.redelivered,
            duplicates=self.ledger.duplicates,
            sim_elapsed=sim_elapsed,
            reach=self.record.sent_times.reach(self.ledger.messages),
            lag=self.record.lag,
            sent_by_deadline=self.record.sent_by_deadline,
            deadline=self.settings.deadline,
            deadline_share=self.settings.deadline_share,
            timeline=self.record.timeline.as_dict(sim_elapsed) if self.elapsed is not None else None,
            retries_pending=len(self.retry_heap)
            + sum(len(b) for b in self.pending_puts if isinstance(b, MessageBatch) and not _first_attempts(b)),
            retries_back_at=max((entry[0] for entry in self.retry_heap), default=0.0),
        )


@contextmanager
def stop_signals_caught(restore: bool = True):
    """SIGINT and SIGTERM are noted in the list yielded, until the block ends
    (or, with restore=False, until the process exits).

    Held for the whole of main(), summary included: a second Ctrl-C that
    comes while the summary is written, or as the process exits, must not
    kill it mid-write or print a KeyboardInterrupt traceback.
    """
    received: list[int] = []

    def note(signum, frame):
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        if restore:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _first_attempts(item: object) -> bool:
    return isinstance(item, MessageBatch) and (item.attempts is None or max(item.attempts) == 1)


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"
