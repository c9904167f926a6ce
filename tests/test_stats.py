import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsbatch.core.stats import BucketCounts, Stats, bucket_of, bucket_value, buckets_by_log, buckets_of


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


def test_buckets_of_an_array_are_the_definitions_to_the_last_power_of_ten():
    # buckets_of takes the decimal exponent from the float's bits; buckets_by_log is the definition
    # (log10). Where they could part, a hair either side of a power of ten (as numpy and Python
    # compute it), and at halves of the second figure (rounding to even), they must not.
    rng = np.random.default_rng(3)
    powers = np.concatenate((np.power(10.0, np.arange(-9, 298.0)), np.array([10.0**k for k in range(-9, 298)])))
    near = [powers]
    for direction in (0.0, np.inf):
        step = powers
        for _ in range(3):
            step = np.nextafter(step, direction)
            near.append(step)
    halves = np.concatenate([(m + 0.5) * np.power(10.0, np.arange(-10, 296.0)) for m in range(10, 100)])
    spread = np.concatenate([rng.lognormal(mean, 3.0, 5000) for mean in range(-18, 60, 6)])
    seconds = np.concatenate((*near, halves, spread, rng.uniform(0.0, 1e-8, 100), [0.0, 1e298, 1e300]))
    for piece in (seconds, seconds[(seconds >= 1e-9) & (seconds < 1e298)], seconds[:1000:3]):
        assert np.array_equal(buckets_of(piece), buckets_by_log(piece))
    assert buckets_of(np.array([1, 2, 30])).tolist() == [bucket_of(1.0), bucket_of(2.0), bucket_of(30.0)]
    # A block of constant times folds into its bucket_of (real time) or its buckets_of (virtual time):
    # the same bucket, at every power's ulps and halves too.
    decimal = np.array([(m + 0.5) * float(f"1e{k}") for m in range(10, 100, 3) for k in range(-10, 296)])
    scalars = np.concatenate((*near, halves[::7], decimal))
    scalars = scalars[(scalars >= 1e-9) & (scalars < 1e298)]
    assert [bucket_of(x) for x in scalars.tolist()] == buckets_of(scalars).tolist()


def test_bucket_counts_count_as_record_block_does():
    # Blocks whose ranges grow down and up, a constant block, and one decades wide (kept key by key).
    rng = np.random.default_rng(5)
    blocks = [rng.lognormal(0.0, 0.3, 500), rng.lognormal(-3.0, 0.3, 400), rng.lognormal(4.0, 0.5, 300)]
    blocks += [np.full(50, 0.25), rng.lognormal(0.0, 20.0, 200), rng.lognormal(-1.0, 0.4, 100), np.empty(0)]
    dense, by_dict = BucketCounts(), Stats()
    for i, block in enumerate(blocks):
        if i % 2:
            dense.add_times(block)
        else:
            dense.add(buckets_of(block))
        by_dict.record_block(block, np.zeros(len(block), dtype=bool))
    counted: dict[int, int] = {}
    dense.into(counted)
    assert counted == by_dict.buckets
    assert dense.spill  # (the constant block and the wide one)


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
