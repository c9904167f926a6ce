"""Redis Streams: senders on any machine. Imported only with --broker.

Keys of run R (every key carries the run id, so runs on one Redis never mix):

    smsbatch:runs          sorted set of runs in progress (workers look here)
    smsbatch:R:state       running | stopping | done (gone: the run is over)
    smsbatch:R:info        the run's settings, as JSON, for workers
    smsbatch:R:work        stream of batches, consumer group "senders"
    smsbatch:R:results     stream of sender reports, read by the coordinator

    producer --XADD--> work --XREADGROUP--> sender (here, or in any worker)
                                              | XADD results + XACK + XDEL work,
                                              v   in one MULTI, once a batch is done
    coordinator <--XREAD-- results      (the coordinator trims what it has read)

Delivery is at least once: a sender acknowledges a batch only after its
results are written, and a batch that a silent sender holds longer than
--claim-after is taken over by a live one (XAUTOCLAIM). A live sender renews
its claims every second (XCLAIM ... JUSTID with idle 0), so a slow send never
looks like a dead sender. The coordinator counts each message id once.

Reports are JSON, never pickle: anyone who can write to the Redis can reach
this code, and must not be able to run theirs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Callable

import redis

from smsbatch.config import SenderSpec, Settings
from smsbatch.core.model import Done, MessageBatch, Progress, Released, SenderDone, Stop, pack_numbers
from smsbatch.core.stats import Stats
from smsbatch.core.text import redact_url

RUNS_KEY = "smsbatch:runs"
GROUP = "senders"
# A sender speaks, renews its claims and reads the run state this often (or
# four times per --claim-after, if that is shorter), so a live sender is never
# taken for a silent one.
BEAT_SECONDS = 1.0
RUNNING, STOPPING, DONE = "running", "stopping", "done"
MAX_QUEUED = 200  # batches the producer may have waiting in the work stream
ENDED_TTL = 60  # seconds they live once the run is over: workers see "done", then they go
SOCKET_TIMEOUT = 5.0  # a Redis that answers nothing for this long is down
# While a run lasts, the coordinator renews its keys every second to live this
# much longer than its own --broker-timeout: if it dies (or loses Redis and
# gives up), the keys expire soon after, and every sender sees the run is over.
KEY_TTL_MARGIN = 5
_TO_DIGITS = bytes.maketrans(b"\x01\x02\x03", b"123")
_FROM_DIGITS = bytes.maketrans(b"123", b"\x01\x02\x03")


class BrokerDown(Exception):
    """Redis stayed unreachable for longer than --broker-timeout."""


class RunGone(Exception):
    """The run's keys are gone from Redis: it ended, expired, or Redis lost them."""


class RunKeys:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        base = f"smsbatch:{run_id}"
        self.state = f"{base}:state"
        self.info = f"{base}:info"
        self.work = f"{base}:work"
        self.results = f"{base}:results"
        self.start = f"{base}:start"  # simulated time 0, as wall-clock seconds since the epoch

    def all(self) -> tuple[str, ...]:
        return (self.state, self.info, self.work, self.results, self.start)


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=2.0)


class Patient:
    """Calls Redis; while it is unreachable, says so once and retries with
    backoff, for up to `timeout` seconds, then raises BrokerDown. Every call
    smsbatch makes is safe to repeat: a repeated report is a duplicate, and
    duplicates are counted once."""

    def __init__(
        self,
        url: str,
        timeout: float,
        say: Callable[[str], None],
        give_up: Callable[[], bool] = lambda: False,
        back: Callable[[], None] = lambda: None,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)  # what messages show: no password
        self.timeout = timeout
        self.say = say
        self.give_up = give_up
        self.back = back  # called when Redis answers again after an outage
        self.down_since: float | None = None

    def __call__(self, call: Callable, *args, **kwargs):
        delay = 0.05
        while True:
            try:
                result = call(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                self._failed(error)
                time.sleep(delay)
                delay = min(2 * delay, 1.0)
                continue
            if self.down_since is not None:
                self.say(f"Redis at {self.shown_url} is back after {time.monotonic() - self.down_since:.1f}s")
                self.down_since = None
                self.back()
            return result

    def _failed(self, error: Exception) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self.say(
                f"Redis at {self.shown_url} is unreachable ({_one_line(error)}); retrying for up to {self.timeout:g}s"
            )
        if now - self.down_since >= self.timeout or self.give_up():
            raise BrokerDown(f"Redis at {self.shown_url} unreachable for {now - self.down_since:.1f}s")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def run_ttl(broker_timeout: float) -> int:
    """Seconds a running run's keys live unless the coordinator renews them."""
    return math.ceil(broker_timeout) + KEY_TTL_MARGIN


def check_reachable(url: str) -> None:
    """Raise ConnectionError (with the reason) if nothing answers at `url`."""
    try:
        connect(url).ping()
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise ConnectionError(_one_line(error)) from None


def process_label() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def consumer_name(index: int) -> str:
    """A sender's name in the consumer group: unique across machines and runs."""
    return f"{process_label()}/{index + 1}"


# ---- what goes on the streams ----


def encode_ids(ids) -> str:
    if isinstance(ids, range):
        return f"{ids.start}-{ids.stop}"
    return ",".join(map(str, ids))


def decode_ids(text: str):
    if "-" in text:
        start, stop = text.split("-")
        return range(int(start), int(stop))
    return tuple(int(i) for i in text.split(",")) if text else ()


def batch_fields(ids, numbers: str, attempts, available=None) -> dict:
    fields = {"ids": encode_ids(ids), "n": numbers}
    if attempts is not None:
        fields["a"] = ",".join(map(str, attempts))
    if available is not None:
        fields["v"] = ",".join(map(repr, available))
    return fields


def part_fields(batch: MessageBatch, positions) -> dict:
    """Batch fields for the messages at `positions` of `batch` (a range of
    positions keeps a range of ids compact)."""
    phones = batch.phones()
    if isinstance(positions, range):
        part = slice(positions.start, positions.stop)
        return batch_fields(
            batch.ids[part],
            pack_numbers(phones[part]),
            batch.attempts[part] if batch.attempts else None,
            batch.available[part] if batch.available else None,
        )
    return batch_fields(
        [batch.ids[p] for p in positions],
        pack_numbers(phones[p] for p in positions),
        [batch.attempt(p) for p in positions],
        [batch.available_at(p) for p in positions],
    )


def batch_from(key: int, fields: dict, text: str) -> MessageBatch | Stop:
    if b"stop" in fields:
        return Stop()
    attempts = fields.get(b"a")
    available = fields.get(b"v")
    return MessageBatch(
        key,
        decode_ids(fields[b"ids"].decode()),
        fields[b"n"].decode(),
        text,
        tuple(int(a) for a in attempts.split(b",")) if attempts else None,
        tuple(float(v) for v in available.split(b",")) if available else None,
    )


def stats_to_json(stats: Stats) -> list:
    return [
        stats.attempts,
        stats.sent,
        stats.failed,
        stats.time_sum,
        list(stats.buckets.items()),
        stats.first_end,
        stats.last_end,
    ]


def stats_from_json(data: list) -> Stats:
    attempts, sent, failed, time_sum, buckets, first_end, last_end = data
    return Stats(attempts, sent, failed, time_sum, {int(b): c for b, c in buckets}, first_end, last_end)


def encode_outcomes(outcomes: bytes) -> str:
    return outcomes.translate(_TO_DIGITS).decode()


def decode_outcomes(text: str) -> bytes:
    return text.encode().translate(_FROM_DIGITS)


def report_fields(kind: str, sender: str, **data) -> dict:
    return {"r": json.dumps({"t": kind, "s": sender, **data}, separators=(",", ":"))}


def spec_to_json(spec: SenderSpec) -> dict:
    return {
        "mean": spec.mean,
        "fail_rate": spec.fail_rate,
        "name": spec.name,
        "window": spec.window,
        "rate": spec.rate,
        "distribution": spec.distribution,
        "spread": spec.spread,
    }


def spec_from_json(data: dict) -> SenderSpec:
    return SenderSpec(**data)


RUN_SETTINGS = (
    "messages",
    "text",
    "distribution",
    "spread",
    "speed",
    "seed",
    "log_level",
    "max_retries",
    "claim_after",
)


def run_info(settings: Settings) -> str:
    return json.dumps({name: getattr(settings, name) for name in RUN_SETTINGS})


def settings_for_worker(info: str, senders: tuple[SenderSpec, ...]) -> Settings:
    """The run's settings, with this worker's senders."""
    return Settings(senders=senders, **json.loads(info))


# ---- the producer's side ----


class StreamProducer:
    """The producer's transport (see transport.py): XADD with back-pressure."""

    capacity = 1  # batches put before the run may start: senders elsewhere come and go anyway

    def __init__(self, url: str, keys: RunKeys, timeout: float) -> None:
        self.url, self.keys, self.timeout = url, keys, timeout
        self.client = None

    def put(self, batch: MessageBatch, timeout: float) -> bool:
        if self.client is None:  # made in the producer process, not inherited through fork
            self.client = connect(self.url)
            self.patient = Patient(self.url, self.timeout, stderr_line("producer"))
        try:
            return self._put(batch, timeout)
        except BrokerDown as error:
            stderr_line("producer")(f"{error}; stopping")
            os._exit(1)  # the coordinator has its own word on it; no traceback

    def _put(self, batch: MessageBatch, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.patient(self.client.xlen, self.keys.work) >= MAX_QUEUED:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        entry = self.patient(
            self.client.xadd, self.keys.work, batch_fields(batch.ids, batch.numbers, batch.attempts), nomkstream=True
        )
        if entry is None:  # no stream to add to: Redis lost the run (the coordinator says so too)
            stderr_line("producer")("the run's work stream is gone from Redis; stopping")
            os._exit(1)
        return True

    def flush(self) -> None:
        pass  # every XADD has been answered

    def abandon(self) -> None:
        pass


def stderr_line(role: str) -> Callable[[str], None]:
    """A function that writes one line for `role` on stderr, whole (one write)."""

    def say(text: str) -> None:
        with contextlib.suppress(OSError):  # stderr closed or cut short: the run goes on without the line
            os.write(2, f"smsbatch: {role}: {text}\n".encode())

    return say


# ---- a sender's side ----


class _Held:
    """A batch this sender took and has not finished."""

    __slots__ = ("batch", "entry", "remaining", "reported")

    def __init__(self, entry: bytes, batch: MessageBatch) -> None:
        self.entry = entry
        self.batch = batch
        self.reported = bytearray(len(batch))
        self.remaining = len(batch)


class SenderLink:
    """One sender's connection to a run: the take/report/pause functions the
    SenderEngine is given, over Redis instead of a queue and a pipe."""

    def __init__(
        self, url: str, keys: RunKeys, sender: str, text: str, claim_after: float, patient: Patient, share: int
    ) -> None:
        self.client = connect(url)
        self.share = share  # messages to hold at once (see runner.share_for)
        self.keys = keys
        self.sender = sender
        self.text = text
        self.claim_after_ms = int(claim_after * 1000)
        self.beat_seconds = min(BEAT_SECONDS, claim_after / 4)
        self.patient = patient
        self.held: dict[int, _Held] = {}
        self.next_key = 0
        self.next_beat = 0.0
        self.next_reclaim = 0.0
        self.reclaim_from = "0-0"
        self.over = False  # the run is over, or stopping: leave
        self.redelivered = 0  # messages taken over from silent senders, not yet reported

    def wait_for_start(self, stopping: Callable[[], bool], poll: float = 0.05) -> float | None:
        """The run's simulated time 0 on this machine's monotonic clock (set by the
        coordinator once its children are ready; a sender joining later reads it at
        once); None if it stops waiting. Machines' clocks are taken to agree (NTP)."""
        while not stopping():
            wall = self._call(self.client.get, self.keys.start)
            if wall is not None:
                return time.monotonic() - (time.time() - float(wall))
            self.beat_if_due()  # a run that ended (or whose coordinator died) before its start: leave
            if self.over:
                return None
            time.sleep(poll)
        return None

    def hello(self, name: str, spec: SenderSpec) -> None:
        self._call(
            self.client.xadd,
            self.keys.results,
            report_fields("hello", self.sender, name=name, spec=spec_to_json(spec), host=socket.gethostname()),
            nomkstream=True,
        )

    def _call(self, call, *args, **kwargs):
        try:
            return self.patient(call, *args, **kwargs)
        except redis.ResponseError as error:
            if "NOGROUP" in str(error):
                raise RunGone("the run's work stream is gone from Redis") from None
            raise

    # ---- take ----

    def take(self, timeout: float):
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
            self._call(self._finish_entries, [entry_id])
            return item
        if reclaimed:
            self.redelivered += len(item)
        if len(item) > self.share:
            item = self._keep_share(item)
        self.held[key] = _Held(entry_id, item)
        return item

    def _keep_share(self, batch: MessageBatch) -> MessageBatch:
        """Keep what this sender will get through soon, and put the rest back
        as a new batch for any sender: batches are sized for the coordinator's
        senders, and a slow sender elsewhere must not sit on a thousand
        messages. The entry is acknowledged when the part kept is done; if this
        sender dies first, the whole entry comes round again, and the part
        given back is then sent twice and counted once."""
        rest = part_fields(batch, range(self.share, len(batch)))
        self._call(self.client.xadd, self.keys.work, rest, nomkstream=True)
        kept = slice(0, self.share)
        return MessageBatch(
            batch.key,
            batch.ids[kept],
            pack_numbers(batch.phones()[kept]),
            batch.text,
            batch.attempts[kept] if batch.attempts else None,
            batch.available[kept] if batch.available else None,
        )

    def _read(self, timeout: float):
        timeout = min(timeout, self.beat_seconds)  # back in time for the next beat
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        answer = self._call(self.client.xreadgroup, GROUP, self.sender, {self.keys.work: ">"}, count=1, block=block)
        if not answer:
            return None
        return answer[0][1][0]

    def _reclaim_if_due(self):
        """Take over one batch that a silent sender has held too long."""
        now = time.monotonic()
        if now < self.next_reclaim:
            return None
        self.next_reclaim = now + self.beat_seconds
        answer = self._call(
            self.client.xautoclaim,
            self.keys.work,
            GROUP,
            self.sender,
            self.claim_after_ms,
            start_id=self.reclaim_from,
            count=1,
        )
        self.reclaim_from = answer[0]
        for entry_id, fields in answer[1]:
            if fields:  # an entry deleted meanwhile comes back empty
                return entry_id, fields
        return None

    # ---- keep alive ----

    def beat_if_due(self) -> None:
        """Every second: renew the claims on what this sender holds, tell the
        coordinator it is alive, and read the run's state."""
        now = time.monotonic()
        if now < self.next_beat:
            return
        self.next_beat = now + self.beat_seconds
        try:
            state = self._call(self._beat)
        except RunGone:
            state = None
        if state != RUNNING.encode():  # over, stopping, or expired (the coordinator is gone)
            self.over = True

    def _beat(self) -> bytes | None:
        pipe = self.client.pipeline(transaction=False)  # made here: a failed pipeline is emptied
        if self.held:
            pipe.xclaim(
                self.keys.work, GROUP, self.sender, 0, [held.entry for held in self.held.values()], idle=0, justid=True
            )
        pipe.xadd(self.keys.results, report_fields("beat", self.sender), nomkstream=True)
        pipe.get(self.keys.state)
        return pipe.execute()[-1]

    # ---- report ----

    def report(self, item) -> None:
        if isinstance(item, Progress):
            self._progress(item)
        elif isinstance(item, SenderDone):
            self._leave()
        elif isinstance(item, Released):
            self._give_back(item)
        # Claimed: the consumer group already knows who holds what.

    def _give_back(self, released: Released) -> None:
        """Part of a batch this sender will not start soon goes back on the work
        stream as a new batch; the entry is acknowledged once the rest is done."""
        held = self.held[released.key]
        for offset in released.offsets:
            held.reported[offset] = 1
        held.remaining -= len(released.offsets)
        finished = []
        if held.remaining == 0:
            finished = [self.held.pop(released.key).entry]
        self._call(self._add_work, part_fields(held.batch, released.offsets), finished)

    def _add_work(self, fields: dict, finished: list) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.keys.work, fields, nomkstream=True)
        if finished:
            pipe.xack(self.keys.work, GROUP, *finished)
            pipe.xdel(self.keys.work, *finished)
        pipe.execute()

    def _progress(self, progress: Progress) -> None:
        done = [self._done_entry(d) for d in progress.done]
        finished = [key for key, held in self.held.items() if held.remaining == 0]
        fields = report_fields(
            "progress",
            self.sender,
            d=done,
            st=stats_to_json(progress.stats),
            r=progress.retries,
            l=progress.log,
            rd=self.redelivered,
            en=progress.ended,
            lg=progress.lag,
            cp=progress.capped,
        )
        entries = [self.held.pop(key).entry for key in finished]
        self._call(self._write, fields, entries)
        self.redelivered = 0

    def _done_entry(self, done: Done) -> list:
        held = self.held[done.key]
        offsets = done.offsets
        if isinstance(offsets, range):
            held.reported[offsets.start : offsets.stop] = b"\1" * len(offsets)
        else:
            for offset in offsets:
                held.reported[offset] = 1
        held.remaining -= len(offsets)
        ids = held.batch.ids
        if isinstance(offsets, range) and isinstance(ids, range):
            ids = ids[offsets.start : offsets.stop]
        else:
            ids = [ids[o] for o in offsets]
        return [encode_ids(ids), encode_outcomes(done.outcomes)]

    def _write(self, fields: dict, finished: list, give_back: list[dict] = ()) -> None:
        """Results first, then the acknowledgement, in one transaction: a batch
        is never acknowledged without its results."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.keys.results, fields, nomkstream=True)
        for batch in give_back:
            pipe.xadd(self.keys.work, batch, nomkstream=True)
        if finished:
            pipe.xack(self.keys.work, GROUP, *finished)
            pipe.xdel(self.keys.work, *finished)  # consumed: the stream stays short
        pipe.execute()

    def _finish_entries(self, entries: list) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.keys.work, GROUP, *entries)
        pipe.xdel(self.keys.work, *entries)
        pipe.execute()

    def _leave(self) -> None:
        """Give back what was not started, as new batches, and say goodbye."""
        give_back, entries, count = [], [], 0
        for held in self.held.values():
            offsets = [o for o, reported in enumerate(held.reported) if not reported]
            entries.append(held.entry)
            if offsets:
                give_back.append(part_fields(held.batch, offsets))
                count += len(offsets)
        self.held.clear()
        self._call(self._write, report_fields("bye", self.sender, given_back=count), entries, give_back)
