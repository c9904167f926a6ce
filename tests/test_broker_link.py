"""A sender's side of a run through Redis, without a server: SenderLink's
bookkeeping against a fake RunStore, and run_sender's ends (a lost transport,
a crash) with a fake port in a real child process."""

import multiprocessing
import os

import pytest

pytest.importorskip("redis", reason="the Redis client is not installed")

from smsbatch.broker import codec
from smsbatch.broker.link import SenderLink
from smsbatch.broker.patient import BrokerDown
from smsbatch.config import SenderSpec, Settings
from smsbatch.core.model import SENT, ChildFailed, Done, Progress, Released, SenderDone, Stop
from smsbatch.core.stats import Stats
from smsbatch.realtime.children import StopSignal
from smsbatch.realtime.sender import run_sender


def as_read(fields):
    return {k.encode(): v.encode() for k, v in fields.items()}


def numbers(ids):
    return "".join(f"+1555{i:07d}\n" for i in ids)


class FakeStore:
    """The RunStore methods a SenderLink calls, writing down what they were asked."""

    def __init__(self, *entries) -> None:
        self.work = list(entries)
        self.added, self.given_back, self.written, self.finished = [], [], [], []

    def read_work(self, consumer, block_ms):
        return self.work.pop(0) if self.work else None

    def reclaim(self, consumer, min_idle_ms, start):
        return start, None

    def beat(self, consumer, held, report):
        return "running"

    def add_work(self, fields, make_stream=False):
        self.added.append(fields)
        return True

    def give_back(self, fields, finished):
        self.given_back.append((fields, list(finished)))

    def write_results(self, report, finished, give_back=()):
        self.written.append((codec.report_from(as_read(report)), list(finished), list(give_back)))

    def finish_entries(self, entries):
        self.finished.extend(entries)


def test_a_link_acknowledges_each_entry_once_everything_in_it_is_reported_or_given_back():
    store = FakeStore(
        (b"1-0", as_read(codec.batch_fields(range(0, 10), numbers(range(0, 10)), None))),
        (b"2-0", as_read(codec.batch_fields((20, 21, 22), numbers((20, 21, 22)), (2, 2, 2)))),
        (b"3-0", as_read(codec.item_fields(Stop()))),
    )
    link = SenderLink(store, "host/1/1", "hi", claim_after=4.0, share=6, clock=lambda: 0.0)

    first = link.take(0.1)
    assert first.ids == range(0, 6)  # its share; the rest goes back for any sender
    assert [f["ids"] for f in store.added] == ["6-10"]

    link.report(Released(0, first.key, (4, 5)))
    assert [(f["ids"], finished) for f, finished in store.given_back] == [("4,5", [])]  # 4 still open

    link.report(Progress(0, (Done(first.key, range(0, 4), bytes([SENT] * 4)),), Stats()))
    report, finished, _ = store.written[-1]
    assert report.done == [(range(0, 4), bytes([SENT] * 4))]
    assert finished == [b"1-0"]  # all six done: acknowledged with the results
    assert first.key not in link.held

    second = link.take(0.1)
    link.report(Progress(0, (Done(second.key, (1,), bytes([SENT])),), Stats()))
    report, finished, _ = store.written[-1]
    assert (report.done, finished) == ([((21,), bytes([SENT]))], [])

    assert isinstance(link.take(0.1), Stop)
    assert store.finished == [b"3-0"]

    link.report(SenderDone(0))
    bye, finished, give_back = store.written[-1]
    assert bye == codec.Bye("host/1/1", 2)
    assert finished == [b"2-0"]
    assert [codec.batch_from(0, as_read(f), "hi").attempts for f in give_back] == [(2, 2)]
    assert [f["ids"] for f in give_back] == ["20,22"]
    assert link.held == {}


class FakePort:
    model_key = 0

    def __init__(self, conn, failure) -> None:
        self.conn, self.failure = conn, failure

    def open(self, stopping):
        return 0.0

    def take(self, timeout):
        raise self.failure

    def report(self, item):
        self.conn.send(item)

    def pause(self, seconds):
        pass

    def waiting(self, start):
        pass

    def sooner_elsewhere(self, batch, start):
        return False

    def over(self):
        return False

    def account_caps(self):
        return {}

    def close(self):
        self.conn.close()


class FakePorts:
    via = " via nowhere"

    def __init__(self, failure) -> None:
        self.failure = failure

    def __call__(self, conn, stop_signal):
        return FakePort(conn, self.failure)


def _run_sender_failing_with(failure):
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    stop = StopSignal()
    settings = Settings(senders=(SenderSpec(0.1, 0.0),), messages=10)
    child = ctx.Process(
        target=run_sender, args=(0, "far", settings, FakePorts(failure), writer, stop, os.getpid()), daemon=True
    )
    child.start()
    writer.close()
    child.join(20)
    said = []
    try:
        while reader.poll(0):
            said.append(reader.recv())
    except EOFError:  # all it said is read
        pass
    reader.close()
    stop.close()
    return child.exitcode, said


class AbandonedStore(FakeStore):
    """Entries a dead sender held, claimable one per call (XAUTOCLAIM ... COUNT 1)."""

    def __init__(self, abandoned) -> None:
        super().__init__()
        self.abandoned = list(abandoned)
        self.reclaims = 0

    def reclaim(self, consumer, min_idle_ms, start):
        self.reclaims += 1
        return start, self.abandoned.pop(0) if self.abandoned else None


def test_a_dead_senders_batches_are_taken_over_one_after_another_not_one_a_beat():
    entries = [(f"{i}-0".encode(), as_read(codec.batch_fields((i,), numbers((i,)), None))) for i in range(1, 31)]
    store = AbandonedStore(entries)
    link = SenderLink(store, "host/1/1", "hi", claim_after=4.0, share=6, clock=lambda: 0.0)  # time stands still
    taken = [link.take(0.0) for _ in range(31)]
    assert [tuple(batch.ids) for batch in taken[:30]] == [(i,) for i in range(1, 31)]  # was: one, then a beat
    assert link.redelivered == 30
    assert taken[30] is None  # none left: the next look waits a beat
    assert store.reclaims == 31
    assert link.take(0.0) is None
    assert store.reclaims == 31


def test_a_sender_that_loses_its_transport_says_so_in_one_line_and_exits_1(capfd):
    status, said = _run_sender_failing_with(BrokerDown("Redis at redis://x unreachable for 30.0s"))
    assert status == 1
    assert said == []  # no crash report: nothing the parent must show as a failure
    err = capfd.readouterr().err
    assert err == "smsbatch: far: Redis at redis://x unreachable for 30.0s; leaving\n"


def test_a_sender_that_crashes_sends_its_traceback_through_its_pipe(capfd):
    status, said = _run_sender_failing_with(ZeroDivisionError("oops"))
    assert status == 1
    assert len(said) == 1
    assert isinstance(said[0], ChildFailed)
    assert said[0].role == "far"
    assert "ZeroDivisionError: oops" in said[0].traceback
    assert capfd.readouterr().err == ""
