"""MessageBatch.part: the one place a batch is cut."""

from smsbatch.core.model import MessageBatch


def batch(**kw) -> MessageBatch:
    return MessageBatch.of(7, range(100, 105), [f"+1555000000{i}" for i in range(5)], "hi", **kw)


def test_a_run_of_positions_keeps_a_range_of_ids_and_first_attempts():
    part = batch().part(range(1, 4))
    assert (part.key, part.ids, part.attempts, part.available) == (7, range(101, 104), None, None)
    assert part.phones() == ["+15550000001", "+15550000002", "+15550000003"]
    assert part.text == "hi"


def test_scattered_positions_carry_their_attempts_and_times_under_a_new_key():
    whole = batch(attempts=(1, 2, 3, 1, 2), available=(0.0, 1.5, 2.5, 0.0, 9.0))
    part = whole.part((4, 0, 2), key=-3)
    assert (part.key, part.ids) == (-3, (104, 100, 102))
    assert part.phones() == ["+15550000004", "+15550000000", "+15550000002"]
    assert (part.attempts, part.available) == ((2, 1, 3), (9.0, 0.0, 2.5))
    assert whole.part(range(2, 5)).attempts == (3, 1, 2)
