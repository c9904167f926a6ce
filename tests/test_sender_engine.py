"""The sender loop, driven by hand with a fake clock: no processes, no sleeping."""

from collections import deque

import pytest

from smsbatch.config import SenderSpec, Settings
from smsbatch.core.clock import FakeClock, SimClock
from smsbatch.core.ledger import Ledger
from smsbatch.core.model import FAILED, RETRY, SENT, Claimed, MessageBatch, Progress, Released, SenderDone, Stop
from smsbatch.core.sender_model import SenderModel
from smsbatch.realtime.sender import SenderEngine


def batches(count, size):
    return [
        MessageBatch.of(
            k, range(k * size, (k + 1) * size), [f"+1202555{i:04d}" for i in range(k * size, (k + 1) * size)], "hi"
        )
        for k in range(count)
    ]


class Harness:
    """The engine with a fake clock, and a runner's part played by hand: what
    the engine gives back (Released) goes to the front of the work again."""

    def __init__(self, spec, work, speed=1.0, stop_at=None, **settings):
        self.clock = FakeClock()
        self.work = deque(work)
        self.reports = []
        self.stop_at = stop_at
        self.taken = {}  # batch key -> batch, for what is given back
        self.next_key = -1
        settings = Settings(messages=1, senders=(spec,), speed=speed, seed=1, **settings)
        self.engine = SenderEngine(
            0,
            SenderModel(spec, settings, 0),
            settings,
            SimClock(self.clock, speed),
            take=self.take,
            report=self.report,
            pause=self.clock.advance,
            sleep=self.clock.advance,
            stop_requested=self.stop_requested,
        )

    def take(self, timeout):
        if self.work:
            item = self.work.popleft()
            if isinstance(item, MessageBatch):
                self.taken[item.key] = item
            return item
        self.clock.advance(timeout)
        return None

    def report(self, item):
        self.reports.append(item)
        if isinstance(item, Released):
            batch = self.taken[item.key]
            phones = batch.phones()
            self.work.appendleft(
                MessageBatch.of(
                    self.next_key,
                    tuple(batch.ids[o] for o in item.offsets),
                    [phones[o] for o in item.offsets],
                    batch.text,
                    tuple(batch.attempt(o) for o in item.offsets),
                )
            )
            self.next_key -= 1

    def stop_requested(self):
        return self.stop_at is not None and self.clock.now() >= self.stop_at

    def run(self):
        self.engine.run()
        return self.reports

    def of(self, kind):
        return [r for r in self.reports if isinstance(r, kind)]

    def ledger(self, messages):
        ledger = Ledger(messages)
        for report in self.reports:
            if isinstance(report, Claimed):
                ledger.claim(0, report.key, self.taken[report.key].ids)
            elif isinstance(report, Released):
                ledger.release_part(0, report.key, report.offsets)
            elif isinstance(report, Progress):
                for done in report.done:
                    ledger.apply(0, done)
        return ledger


def test_every_message_is_sent_once_and_reported_in_order():
    h = Harness(SenderSpec(0.5, 0.2, distribution="exponential"), [*batches(3, 10), Stop()])
    reports = h.run()
    assert isinstance(reports[0], Claimed)
    assert isinstance(reports[-1], SenderDone)
    ledger = h.ledger(30)
    assert ledger.sent + ledger.failed == 30
    assert ledger.duplicates == 0
    attempts = sum(p.stats.attempts for p in h.of(Progress))
    assert attempts == 30
    # One at a time: the simulated run takes the sum of the drawn send times.
    time_sum = sum(p.stats.time_sum for p in h.of(Progress))
    assert h.clock.now() == pytest.approx(time_sum, abs=0.2)


def test_claims_come_before_the_reports_of_their_batch():
    h = Harness(SenderSpec(0.1, 0.0), [*batches(2, 10), Stop()])
    h.run()
    claimed = set()
    for report in h.reports:
        if isinstance(report, Claimed):
            claimed.add(report.key)
        elif isinstance(report, Progress):
            assert {d.key for d in report.done} <= claimed


def test_failure_rate_and_mean_time_match_the_settings():
    h = Harness(SenderSpec(0.2, 0.25), [*batches(400, 10), Stop()], speed=50)
    h.run()
    stats = sum((p.stats for p in h.of(Progress)), start=h.of(Progress)[0].stats.__class__())
    assert stats.attempts == 4000
    assert stats.failed / stats.attempts == pytest.approx(0.25, abs=0.03)
    assert stats.mean == pytest.approx(0.2, rel=0.05)


def test_a_window_keeps_many_sends_in_flight():
    h = Harness(SenderSpec(1.0, 0.0, window=10, distribution="constant"), [*batches(10, 10), Stop()])
    h.run()
    assert h.clock.now() == pytest.approx(10.0, abs=0.2)  # 100 sends of 1 s, 10 at a time


def test_rate_caps_the_starts():
    h = Harness(SenderSpec(0.0, 0.0, window=100, rate=5), [*batches(5, 10), Stop()])
    h.run()
    assert h.clock.now() == pytest.approx(50 / 5, abs=0.3)


def test_speed_scales_real_time_not_reported_time():
    slow = Harness(SenderSpec(0.5, 0.0, distribution="constant"), [*batches(1, 10), Stop()], speed=1)
    fast = Harness(SenderSpec(0.5, 0.0, distribution="constant"), [*batches(1, 10), Stop()], speed=100)
    slow.run(), fast.run()
    assert slow.clock.now() == pytest.approx(5.0, abs=0.15)
    assert fast.clock.now() == pytest.approx(0.05, abs=0.01)
    assert sum(p.stats.time_sum for p in fast.of(Progress)) == pytest.approx(5.0)


def test_retries_then_failure():
    work = [MessageBatch.of(-1, (7, 8), ["+12025550107", "+12025550108"], "hi", (1, 3)), Stop()]
    h = Harness(SenderSpec(0.0, 1.0), work, max_retries=2)
    h.run()
    (progress,) = h.of(Progress)
    assert progress.done[0].outcomes == bytes([RETRY, FAILED])
    ((message_id, phone, attempt, back_at),) = progress.retries
    assert (message_id, phone, attempt) == (7, "+12025550107", 2)
    assert 0.5 <= back_at <= 1.5  # failed at 0, back after --retry-backoff 1 x U(0.5, 1.5)


def test_warm_stop_gives_up_what_has_not_started():
    h = Harness(SenderSpec(1.0, 0.0, distribution="constant"), batches(5, 10), stop_at=3.5)
    h.run()
    assert isinstance(h.reports[-1], SenderDone)
    attempts = sum(p.stats.attempts for p in h.of(Progress))
    assert attempts == 4  # three before the stop, the fourth finishes within the grace second
    assert h.clock.now() < 3.5 + 1.0 + 0.01


def test_warm_stop_abandons_a_long_send():
    h = Harness(SenderSpec(30.0, 0.0, distribution="constant"), batches(1, 10), stop_at=1.0)
    h.run()
    assert not h.of(Progress)  # nothing finished
    assert h.clock.now() < 2.0


def test_logging_reports_every_message():
    h = Harness(SenderSpec(0.0, 0.5), [*batches(1, 10), Stop()], log_level="INFO")
    h.run()
    log = [entry for p in h.of(Progress) for entry in p.log]
    assert sorted(entry[0] for entry in log) == list(range(10))
    assert {entry[2] for entry in log} <= {SENT, FAILED}


def test_rate_holds_with_variable_send_times_and_late_wake_ups():
    # Sends of ~1 ms, 100 in flight, capped at 5000/s: every start must take the
    # next slot of the rate limit in time order, even when a wake-up comes late.
    h = Harness(SenderSpec(0.001, 0.0, window=100, rate=5000, distribution="lognormal"), [*batches(20, 500), Stop()])
    h.run()
    stats = h.of(Progress)[0].stats.__class__()
    for p in h.of(Progress):
        stats.merge(p.stats)
    assert stats.attempts == 10_000
    assert stats.rate == pytest.approx(5000, rel=0.003)
