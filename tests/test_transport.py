import multiprocessing
import time

import pytest

from smsbatch.core.model import MessageBatch, Stop
from smsbatch.local.transport import LocalTransport

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def transport():
    t = LocalTransport(multiprocessing.get_context("fork"), senders=1)  # room for t.capacity items
    yield t
    t.close()


def test_offer_take_in_order_and_full(transport):
    take = transport.taker(0)
    batch = MessageBatch.of(0, range(2), ["+12025550100", "+12025550101"], "hi")
    assert transport.offer(batch)
    assert transport.offer(Stop())
    assert take(1.0) == batch
    assert take(1.0) == Stop()
    assert take(0.05) is None
    assert take(0.0) is None
    assert all(transport.offer(Stop()) for _ in range(transport.capacity))
    assert not transport.offer(Stop())  # bounded: one more does not fit


def test_a_dead_holders_read_lock_is_freed_and_only_its(transport):
    lock = transport.work._rlock
    assert lock.acquire(False)
    transport.lock_holder.value = 3 + 1  # as sender 3 does while it waits in take()
    assert not transport.free_lock_of(1)  # not the holder: nothing released
    assert not lock.acquire(False)
    assert transport.free_lock_of(3)
    assert lock.acquire(False)  # released on sender 3's behalf
    lock.release()
    assert transport.lock_holder.value == 0


def test_taker_leaves_no_holder_behind(transport):
    take = transport.taker(5)
    started = time.monotonic()
    assert take(0.1) is None
    assert time.monotonic() - started >= 0.09
    assert transport.lock_holder.value == 0
    assert not transport.writer_stuck()
