"""The wire format of a run through Redis, without a server: batches, ids,
outcomes, stats and every kind of report travel whole."""

import json

import pytest

from smsbatch.broker import codec
from smsbatch.config import SenderSpec, Settings
from smsbatch.core.model import FAILED, RETRY, SENT, MessageBatch, Stop
from smsbatch.core.stats import Stats


def as_read(fields):
    """Fields as Redis gives them back: bytes."""
    return {k.encode(): v.encode() for k, v in fields.items()}


@pytest.mark.parametrize("ids", [range(0), range(5, 9), (3, 1, 4, 1000000), ()])
def test_ids_round_trip(ids):
    assert tuple(codec.decode_ids(codec.encode_ids(ids))) == tuple(ids)


def test_outcomes_and_stats_round_trip():
    outcomes = bytes([SENT, FAILED, RETRY, SENT])
    assert codec.decode_outcomes(codec.encode_outcomes(outcomes)) == outcomes
    stats = Stats()
    for seconds, ok in [(0.5, True), (0.0, False), (12.0, True)]:
        stats.record(seconds, ok, ended_at=seconds)
    assert codec.stats_from_json(codec.stats_to_json(stats)) == stats
    assert codec.stats_from_json(codec.stats_to_json(Stats())) == Stats()


def test_a_batch_travels_whole():
    fields = codec.batch_fields((7, 3), "+15550000001\n+15550000002\n", (2, 3))
    batch = codec.batch_from(4, {k.encode(): v.encode() for k, v in fields.items()}, "hi")
    assert (batch.key, batch.ids, batch.phones(), batch.attempts, batch.text) == (
        4,
        (7, 3),
        ["+15550000001", "+15550000002"],
        (2, 3),
        "hi",
    )
    assert isinstance(codec.batch_from(0, {b"stop": b"1"}, "hi"), Stop)


def test_part_of_a_batch_keeps_ids_numbers_and_attempts_together():
    batch = MessageBatch.of(0, range(10, 14), [f"+1555000001{i}" for i in range(4)], "hi")

    def decode(fields):
        return codec.batch_from(1, {k.encode(): v.encode() for k, v in fields.items()}, "hi")

    tail = decode(codec.part_fields(batch, range(2, 4)))
    assert tail.ids == range(12, 14)
    assert tail.phones() == ["+15550000012", "+15550000013"]
    some = decode(codec.part_fields(batch, [3, 0]))
    assert some.ids == (13, 10)
    assert some.phones() == ["+15550000013", "+15550000010"]
    assert some.attempts == (1, 1)


def test_a_batch_keeps_its_retry_times_and_a_stop_is_a_stop():
    batch = MessageBatch.of(-3, (5, 9), ["+15550000005", "+15550000009"], "hi", (2, 4), (1.5, 0.25))
    again = codec.batch_from(-3, as_read(codec.item_fields(batch)), "hi")
    assert again == batch
    assert isinstance(codec.batch_from(7, as_read(codec.item_fields(Stop())), "hi"), Stop)


def test_the_wire_stays_short():
    fields = codec.batch_fields(range(0, 1000), "+15550000001\n", None)
    assert set(fields) == {"ids", "n"}
    assert fields["ids"] == "0-1000"


def _stats():
    stats = Stats()
    stats.record(0.5, True, ended_at=0.5)
    stats.record(2.0, False, ended_at=3.0)
    return stats


REPORTS = [
    codec.Opened(),
    codec.Hello("host/1/2", "far@host/1", SenderSpec(0.5, 0.1, name="far", window=3, rate=2.0), "host"),
    codec.Alive("host/1/2"),
    codec.Bye("host/1/2", 17),
    codec.StreamProgress(
        "host/1/2",
        [(range(10, 14), bytes([SENT, SENT, FAILED, RETRY])), ((3, 99), bytes([SENT, FAILED]))],
        _stats(),
        [[12, "+15550000012", 2, 4.5]],
        [[10, "+15550000010", SENT, 0.5, 1]],
        4,
        [[0.5, 3.0, SENT, 1]],
        0.125,
        0.75,
        [[15.5, 1], [20.25, 2]],  # receipts: (when, what it says)
    ),
]


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: type(r).__name__)
def test_every_report_travels_whole(report):
    fields = codec.report_fields(report)
    assert list(fields) == ["r"]  # one field, JSON: never pickle
    json.loads(fields["r"])
    assert codec.report_from(as_read(fields)) == report


def test_a_report_of_an_unknown_kind_says_the_sender_is_alive():
    fields = {b"r": json.dumps({"t": "news", "s": "host/1/2"}).encode()}
    assert codec.report_from(fields) == codec.Alive("host/1/2")


def test_a_worker_gets_the_runs_settings_with_its_own_senders():
    settings = Settings(senders=(), messages=123, text="hello", seed=9, max_retries=2, claim_after=3.0, speed=5.0)
    mine = (SenderSpec(0.2, 0.0, name="mine"),)
    theirs = codec.settings_for_worker(codec.run_info(settings), mine)
    assert theirs.senders == mine
    assert (theirs.messages, theirs.text, theirs.seed, theirs.max_retries, theirs.claim_after, theirs.speed) == (
        123,
        "hello",
        9,
        2,
        3.0,
        5.0,
    )
