import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsbatch.core.stats import Stats, bucket_of, bucket_value


def make(times_and_oks):
    stats = Stats()
    for seconds, ok in times_and_oks:
        stats.record(seconds, ok)
    return stats


def test_record_counts_and_mean():
    stats = make([(1.0, True), (2.0, False), (3.0, True)])
    assert (stats.attempts, stats.sent, stats.failed) == (3, 2, 1)
    assert stats.mean == pytest.approx(2.0)
    assert Stats().mean == 0.0
    assert Stats().percentile(0.5) == 0.0


@pytest.mark.parametrize("seconds", [0.0, 1e-6, 0.0123, 0.099, 0.1, 0.5, 0.999, 1.0, 3.14159, 99.5, 12345.0])
def test_buckets_keep_two_significant_figures(seconds):
    value = bucket_value(bucket_of(seconds))
    assert value == pytest.approx(seconds, rel=0.05, abs=1e-12)


def test_percentiles():
    stats = make([(i / 100, True) for i in range(1, 101)])  # 0.01 .. 1.00
    assert stats.percentile(0.50) == pytest.approx(0.50, rel=0.03)
    assert stats.percentile(0.95) == pytest.approx(0.95, rel=0.03)
    assert stats.percentile(0.99) == pytest.approx(0.99, rel=0.03)
    snap = stats.snapshot()
    assert snap["attempts"] == 100
    assert snap["p50_s"] == stats.percentile(0.5)


def test_merge_equals_recording_everything_in_one():
    a = make([(0.1, True), (0.2, False)])
    b = make([(0.3, True)])
    whole = make([(0.1, True), (0.2, False), (0.3, True)])
    merged = a + b
    assert (merged.attempts, merged.sent, merged.failed, merged.buckets) == (
        whole.attempts,
        whole.sent,
        whole.failed,
        whole.buckets,
    )
    assert a.attempts == 2  # + leaves its operands alone


records = st.lists(st.tuples(st.floats(0, 1e4, allow_nan=False), st.booleans()), max_size=30)


def key(stats):
    return stats.attempts, stats.sent, stats.failed, round(stats.time_sum, 6), stats.buckets


@given(records, records, records)
def test_merge_is_associative_and_commutative(x, y, z):
    a, b, c = make(x), make(y), make(z)
    assert key((a + b) + c) == key(a + (b + c))
    assert key(a + b) == key(b + a)
    merged = a + b + c
    assert min(merged.attempts, merged.sent, merged.failed) >= 0
    assert merged.sent + merged.failed == merged.attempts == len(x) + len(y) + len(z)
    assert all(count > 0 for count in merged.buckets.values())


def test_rate_between_first_and_last_end():
    stats = Stats()
    for i in range(11):
        stats.record(0.0, True, ended_at=5.0 + i * 0.5)
    assert stats.rate == pytest.approx(2.0)
    other = Stats()
    other.record(0.0, True, ended_at=1.0)
    merged = stats + other
    assert (merged.first_end, merged.last_end) == (1.0, 10.0)
    assert Stats().rate == 0.0
