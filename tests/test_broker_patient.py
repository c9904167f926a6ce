"""Patient, driven through Redis outages with a fake clock and a fake sleep:
no server, no real waiting."""

import pytest

redis = pytest.importorskip("redis", reason="the Redis client is not installed")

from smsbatch.broker.patient import BrokerDown, Patient  # noqa: E402
from smsbatch.core.model import TransportLost  # noqa: E402

URL = "redis://admin:secret@redis-host:6379/0"


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Outage:
    """A Redis call that fails `failures` times, then answers."""

    def __init__(self, failures: float) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise redis.ConnectionError("Connection refused")
        return value


def patient(timeout=30.0):
    fake, said, backs = FakeTime(), [], []
    waiter = Patient(URL, timeout, said.append, back=lambda: backs.append(fake.now), clock=fake.clock, sleep=fake.sleep)
    return waiter, fake, said, backs


def test_an_answer_comes_straight_back():
    waiter, fake, said, backs = patient()
    assert waiter(Outage(0), "ok") == "ok"
    assert (fake.slept, said, backs) == ([], [], [])


def test_an_outage_is_said_once_retried_with_backoff_and_its_end_is_said():
    waiter, fake, said, backs = patient()
    call = Outage(7)
    assert waiter(call, "ok") == "ok"
    assert call.calls == 8
    assert fake.slept == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]  # doubled, then at most a second
    assert len(said) == 2
    assert said[0] == (
        "Redis at redis://admin:***@redis-host:6379/0 is unreachable (Connection refused); retrying for up to 30s"
    )
    assert said[1] == "Redis at redis://admin:***@redis-host:6379/0 is back after 3.5s"
    assert backs == [pytest.approx(103.55)]  # once, when Redis answered again
    # The next outage is news again, and its backoff starts short again.
    assert waiter(Outage(1), "again") == "again"
    assert len(said) == 4
    assert fake.slept[-1] == 0.05
    assert len(backs) == 2


def test_an_outage_longer_than_the_timeout_raises_broker_down():
    waiter, fake, said, backs = patient(timeout=3.0)
    call = Outage(float("inf"))
    with pytest.raises(BrokerDown) as raised:
        waiter(call, "never")
    assert isinstance(raised.value, TransportLost)  # one line and exit 1, no traceback
    assert str(raised.value) == "Redis at redis://admin:***@redis-host:6379/0 unreachable for 3.5s"
    assert "secret" not in str(raised.value)
    assert 3.0 <= fake.now - 100.0 < 3.0 + 1.0  # it gave up at the first failure past the timeout
    assert len(said) == 1
    assert backs == []


def test_giving_up_ends_the_wait_sooner():
    waiter, fake, said, _ = patient(timeout=30.0)
    waiter.give_up = lambda: len(fake.slept) >= 3  # a stop was asked for during the third wait
    with pytest.raises(BrokerDown):
        waiter(Outage(float("inf")), "never")
    assert len(fake.slept) == 3
    assert len(said) == 1


def test_an_error_that_is_not_an_outage_is_not_retried():
    waiter, fake, said, _ = patient()

    def refuse():
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        waiter(refuse)
    assert (fake.slept, said) == ([], [])
