import io
import random
import time

import pytest

from smsbatch.cli import main
from smsbatch.core.phones import (
    POOL_SIZE,
    PhoneError,
    PhonePool,
    is_mobile,
    normalise,
    read_recipients,
)
from smsbatch.core.source import MessageSource


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "IN", "BR", "JP", "AU"])
def test_a_sample_of_drawn_numbers_is_valid_e164_mobiles(region):
    pool = PhonePool.build(region, random.Random(1))
    numbers = pool.numbers(2, range(2000))
    assert all(n.startswith("+") and n[1:].isdigit() for n in numbers)
    invalid = [n for n in numbers if not is_mobile(n, region)]
    assert invalid == []
    assert len(set(numbers)) == 2000


def test_drawing_is_far_cheaper_than_validating():
    # The producer must not call the validator per number: drawing 100,000
    # numbers costs less than validating 2,000 (a ratio, measured side by side).
    pool = PhonePool.build("US", random.Random(1))
    start = time.perf_counter()
    pool.numbers(3, range(100_000))
    draw_time = time.perf_counter() - start
    sample = pool.numbers(3, range(100_000, 102_000))
    start = time.perf_counter()
    for number in sample:
        is_mobile(number, "US")
    validate_time = time.perf_counter() - start
    assert draw_time < validate_time


def test_region_without_mobiles_is_refused():
    with pytest.raises(PhoneError):
        PhonePool.build("AQ", random.Random(1))


def test_batches_are_reproducible_from_seed_and_key():
    pool = PhonePool.build("US", random.Random(1))
    source = MessageSource(2500, 1000, "hi", seed=9, pool=pool)
    batches = list(source.batches())
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [b.ids for b in batches] == [range(1000), range(1000, 2000), range(2000, 2500)]
    assert source.batch(1) == batches[1]
    other = MessageSource(2500, 1000, "hi", seed=10, pool=pool)
    assert other.batch(1).numbers != batches[1].numbers


def test_recipients_file(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text(
        "phone,name\n"  # a header: not a number, counted invalid
        "+1 415 555 2671,Ann\n"
        "(202) 555-0143\n"  # national format, read in --region
        "\n"
        "12345\n"  # too short
        "+44 7400 123456,Bob\n"
    )
    recipients = read_recipients(str(path), "US")
    assert (recipients.valid, recipients.invalid, recipients.duplicates) == (3, 2, 0)
    source = MessageSource(3, 2, "hi", seed=1, recipients=recipients)
    phones = [p for b in source.batches() for p in b.phones()]
    assert phones == ["+14155552671", "+12025550143", "+447400123456"]
    assert source.batch(1).phones() == ["+447400123456"]


def test_normalise():
    assert normalise("020 7946 0958", "GB") == "+442079460958"
    assert normalise("not a number", "US") is None


def test_binary_recipients_file_is_refused(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"+14155552671\n\x00\x01\x02")
    with pytest.raises(PhoneError, match="not a text file"):
        read_recipients(str(path), "US")


def test_pool_is_cached_and_the_same_every_time(tmp_path):
    first = PhonePool.for_region("GB", cache_dir=str(tmp_path))
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1
    assert cached[0].name.startswith("prefixes-GB-")
    assert PhonePool.for_region("GB", cache_dir=str(tmp_path)) == first
    cached[0].write_text("garbage here\n")  # a broken cache is rebuilt, not trusted
    assert PhonePool.for_region("GB", cache_dir=str(tmp_path)) == first
    assert all(is_mobile(n, "GB") for n in first.numbers(1, range(500)))


def test_suffixes_are_uniform():
    from collections import Counter

    pool = PhonePool.build("US", random.Random(1))
    numbers = pool.numbers(5, range(200_000))
    last_digit = Counter(n[-1] for n in numbers)
    assert all(abs(c / 200_000 - 0.1) < 0.005 for c in last_digit.values())
    first_suffix_digit = Counter(n[-4] for n in numbers)
    assert all(abs(c / 200_000 - 0.1) < 0.005 for c in first_suffix_digit.values())
    prefixes = Counter(n[:-4] for n in numbers)
    assert len(prefixes) == len(pool.prefixes) == POOL_SIZE


@pytest.fixture(scope="module")
def us_pool():
    return PhonePool.build("US", random.Random(1))


def _run_numbers(source):
    return [number for batch in source.batches() for number in batch.phones()]


def test_every_random_number_of_a_run_is_distinct(us_pool):
    # Drawn with replacement, 100,000 numbers from 2.56M had ~1,900 repeats.
    numbers = _run_numbers(MessageSource(100_000, 1000, "hi", seed=3, pool=us_pool))
    assert len(numbers) == len(set(numbers)) == 100_000
    assert all(is_mobile(n, "US") for n in numbers[::500])


def test_same_seed_same_numbers_whatever_the_batch_size(us_pool):
    numbers = _run_numbers(MessageSource(3000, 1000, "hi", seed=4, pool=us_pool))
    assert _run_numbers(MessageSource(3000, 7, "hi", seed=4, pool=us_pool)) == numbers
    assert MessageSource(3000, 7, "hi", seed=4, pool=us_pool).batch(100).phones() == numbers[700:707]
    assert len(set(numbers) & set(_run_numbers(MessageSource(3000, 1000, "hi", seed=5, pool=us_pool)))) < 10


def test_a_whole_pool_is_dealt_once_each():
    pool = PhonePool("US", ("+1202555", "+1415555"))
    numbers = pool.numbers(6, range(pool.size))
    assert sorted(numbers) == [p + f"{i:04d}" for p in pool.prefixes for i in range(10_000)]


def test_numbers_are_made_at_millions_a_second(us_pool):
    # Against the cheapest way to make a string per number, measured here
    # and now (best of three each, so a busy machine slows both alike).
    ids = range(200_000)

    def best_of_three(make):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            make()
            times.append(time.perf_counter() - start)
        return min(times)

    baseline = best_of_three(lambda: "".join(map(str, ids)))
    dealt = best_of_three(lambda: us_pool.numbers_packed(7, ids))
    assert dealt < 4 * baseline  # the baseline makes ~5M a second here


def test_more_random_numbers_than_the_region_holds_is_bad_input(no_children_left):
    size = PhonePool.for_region("US").size
    out, err = io.StringIO(), io.StringIO()
    status = main(["--messages", str(size + 1), "--sender", "0:0"], stdout=out, stderr=err)
    assert status == 2
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1
    assert (
        f"argument --messages: region US has {size:,} distinct random mobile numbers here; ask for at most that many"
    ) in err.getvalue()
