"""What goes on the streams, and back: the wire format of a run through Redis.

The work stream holds batches (or Stops); the results stream holds reports.
A field's name on the wire is short (a busy run writes thousands of entries a
second); here each one has a name that says what it holds.

Reports are JSON, never pickle: anyone who can write to the Redis can reach
this code, and must not be able to run theirs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields

from smsbatch.core.model import MessageBatch, Stop
from smsbatch.core.settings import SenderSpec, Settings, worker_fields
from smsbatch.core.stats import Stats

Ids = range | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a stream entry, by its name on the wire."""

    wire: str  # as XADD writes it

    @property
    def raw(self) -> bytes:
        """As Redis gives it back."""
        return self.wire.encode()


# ---- the work stream ----

IDS = Field("ids")  # message ids: "start-stop" for a range, else "i,j,k"
NUMBERS = Field("n")  # the phone numbers, each ended by a newline (MessageBatch.numbers)
ATTEMPTS = Field("a")  # attempt of each message, "1,3"; absent: every one a first attempt
AVAILABLE = Field("v")  # simulated time each entered the queue; absent: time 0
STOP = Field("stop")  # present: the entry is a Stop for one sender, not a batch

# Outcome codes (model.SENT, FAILED, RETRY, THROTTLED, INTERRUPTED, EXPIRED: 1 to 6) as the digits "1" to "6".
_TO_DIGITS = bytes.maketrans(bytes(range(1, 7)), b"123456")
_FROM_DIGITS = bytes.maketrans(b"123456", bytes(range(1, 7)))


def encode_ids(ids) -> str:
    if isinstance(ids, range):
        return f"{ids.start}-{ids.stop}"
    return ",".join(map(str, ids))


def decode_ids(text: str) -> Ids:
    if "-" in text:
        start, stop = text.split("-")
        return range(int(start), int(stop))
    return tuple(int(i) for i in text.split(",")) if text else ()


def encode_outcomes(outcomes: bytes) -> str:
    return outcomes.translate(_TO_DIGITS).decode()


def decode_outcomes(text: str) -> bytes:
    return text.encode().translate(_FROM_DIGITS)


def batch_fields(ids, numbers: str, attempts, available=None) -> dict[str, str]:
    fields = {IDS.wire: encode_ids(ids), NUMBERS.wire: numbers}
    if attempts is not None:
        fields[ATTEMPTS.wire] = ",".join(map(str, attempts))
    if available is not None:
        fields[AVAILABLE.wire] = ",".join(map(repr, available))
    return fields


def item_fields(item: MessageBatch | Stop) -> dict[str, str]:
    """A batch, or a Stop, as a work stream entry."""
    if isinstance(item, Stop):
        return {STOP.wire: "1"}
    return batch_fields(item.ids, item.numbers, item.attempts, item.available)


def part_fields(batch: MessageBatch, positions: range | Sequence[int]) -> dict[str, str]:
    """Batch fields for the messages at `positions` of `batch`."""
    part = batch.part(positions)
    return batch_fields(part.ids, part.numbers, part.attempts, part.available)


def batch_from(key: int, fields: dict, text: str) -> MessageBatch | Stop:
    if STOP.raw in fields:
        return Stop()
    attempts = fields.get(ATTEMPTS.raw)
    available = fields.get(AVAILABLE.raw)
    return MessageBatch(
        key,
        decode_ids(fields[IDS.raw].decode()),
        fields[NUMBERS.raw].decode(),
        text,
        tuple(int(a) for a in attempts.split(b",")) if attempts else None,
        tuple(float(v) for v in available.split(b",")) if available else None,
    )


# ---- the results stream: reports ----

REPORT = Field("r")  # the report, as JSON

# The report's JSON keys.
_KIND, _SENDER = "t", "s"
_NAME, _SPEC, _HOST = "name", "spec", "host"  # hello
_DONE, _STATS, _RETRIES, _LOG = "d", "st", "r", "l"  # progress
_REDELIVERED, _ENDED, _LAG, _CAPPED, _RECEIPTS = "rd", "en", "lg", "cp", "dl"  # progress
_GIVEN_BACK = "given_back"  # bye


@dataclass(frozen=True, slots=True)
class Opened:
    """The coordinator made the run (the first entry, so that the stream exists)."""

    sender: str = ""


@dataclass(frozen=True, slots=True)
class Hello:
    """A sender joins: who it is, how it sends, and from where."""

    sender: str  # its consumer name
    name: str
    spec: SenderSpec
    host: str


@dataclass(frozen=True, slots=True)
class StreamProgress:
    """model.Progress as it travels through Redis: by message ids, not offsets."""

    sender: str
    done: Sequence[tuple[Ids, bytes]]  # (message ids, their outcomes)
    stats: Stats
    retries: Sequence  # as in model.Progress
    log: Sequence
    redelivered: int  # messages it took over from silent senders since its last report
    ended: Sequence
    lag: float
    capped: float
    receipts: Sequence = ()  # as in model.Progress


@dataclass(frozen=True, slots=True)
class Alive:
    """A sender's beat: nothing to report, but alive."""

    sender: str


@dataclass(frozen=True, slots=True)
class Bye:
    """A sender leaves, having given back `given_back` messages it had not started."""

    sender: str
    given_back: int


Report = Opened | Hello | StreamProgress | Alive | Bye
_KINDS = {Opened: "start", Hello: "hello", StreamProgress: "progress", Alive: "beat", Bye: "bye"}


def report_fields(report: Report) -> dict[str, str]:
    data: dict[str, object] = {_KIND: _KINDS[type(report)], _SENDER: report.sender}
    if isinstance(report, Hello):
        data.update({_NAME: report.name, _SPEC: spec_to_json(report.spec), _HOST: report.host})
    elif isinstance(report, StreamProgress):
        data.update(_progress_json(report))
    elif isinstance(report, Bye):
        data[_GIVEN_BACK] = report.given_back
    return {REPORT.wire: json.dumps(data, separators=(",", ":"))}


def _progress_json(report: StreamProgress) -> dict:
    return {
        _DONE: [[encode_ids(ids), encode_outcomes(outcomes)] for ids, outcomes in report.done],
        _STATS: stats_to_json(report.stats),
        _RETRIES: report.retries,
        _LOG: report.log,
        _REDELIVERED: report.redelivered,
        _ENDED: report.ended,
        _LAG: report.lag,
        _CAPPED: report.capped,
        _RECEIPTS: report.receipts,
    }


def report_from(fields: dict) -> Report:
    data = json.loads(fields[REPORT.raw])
    kind, sender = data[_KIND], data[_SENDER]
    if kind == "start":
        return Opened(sender)
    if kind == "hello":
        return Hello(sender, data[_NAME], spec_from_json(data[_SPEC]), data[_HOST])
    if kind == "progress":
        return StreamProgress(
            sender,
            [(decode_ids(ids), decode_outcomes(outcomes)) for ids, outcomes in data[_DONE]],
            stats_from_json(data[_STATS]),
            data[_RETRIES],
            data[_LOG],
            data[_REDELIVERED],
            data[_ENDED],
            data[_LAG],
            data[_CAPPED],
            data.get(_RECEIPTS, ()),  # a sender of a version before receipts says none
        )
    if kind == "bye":
        return Bye(sender, data[_GIVEN_BACK])
    return Alive(sender)  # a beat (or a kind this version does not know: the sender is alive, at least)


def stats_to_json(stats: Stats) -> list:
    return [
        stats.attempts,
        stats.sent,
        stats.failed,
        stats.time_sum,
        list(stats.buckets.items()),
        stats.first_end,
        stats.last_end,
        stats.throttled,
        stats.interrupted,
    ]


def stats_from_json(data: list) -> Stats:
    attempts, sent, failed, time_sum, buckets, first_end, last_end, throttled, interrupted = data
    return Stats(
        attempts, sent, failed, time_sum, {int(b): c for b, c in buckets}, first_end, last_end, throttled, interrupted
    )


def spec_to_json(spec: SenderSpec) -> dict:
    """Every field of the spec, by its name (a new field travels without a word here)."""
    return {field.name: getattr(spec, field.name) for field in fields(SenderSpec)}


def spec_from_json(data: dict) -> SenderSpec:
    down = tuple(tuple(outage) for outage in data.pop("down", ()))  # JSON has lists, the spec tuples
    return SenderSpec(**data, down=down)


# ---- the run's settings, for workers ----


def run_info(settings: Settings) -> str:
    """The run's settings a worker's senders need: the table's `worker` fields (core/settings.py)."""
    return json.dumps({name: getattr(settings, name) for name in worker_fields()})


def settings_for_worker(info: str, senders: tuple[SenderSpec, ...]) -> Settings:
    """The run's settings, with this worker's senders."""
    return Settings(senders=senders, **json.loads(info))
