import random
import time

import pytest

from smsbatch.phones import PhoneError, PhonePool, is_mobile, normalise, scan_recipients
from smsbatch.producer import MessageSource


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "IN", "BR", "JP", "AU"])
def test_a_sample_of_drawn_numbers_is_valid_e164_mobiles(region):
    pool = PhonePool.build(region, random.Random(1))
    numbers = pool.draw(random.Random(2), 2000)
    assert all(n.startswith("+") and n[1:].isdigit() for n in numbers)
    invalid = [n for n in numbers if not is_mobile(n, region)]
    assert invalid == []
    assert len(set(numbers)) > 1900  # random, not a handful repeated


def test_drawing_is_far_cheaper_than_validating():
    # The producer must not call the validator per number: drawing 100,000
    # numbers costs less than validating 2,000 (a ratio, measured side by side).
    pool = PhonePool.build("US", random.Random(1))
    rng = random.Random(3)
    start = time.perf_counter()
    pool.draw(rng, 100_000)
    draw_time = time.perf_counter() - start
    sample = pool.draw(rng, 2_000)
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
    assert [b.ids for b in batches] == [range(0, 1000), range(1000, 2000), range(2000, 2500)]
    assert source.batch(1) == batches[1]
    other = MessageSource(2500, 1000, "hi", seed=10, pool=pool)
    assert other.batch(1).numbers != batches[1].numbers


def test_recipients_file(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text(
        "phone,name\n"            # a header: not a number, counted invalid
        "+1 415 555 2671,Ann\n"
        "(202) 555-0143\n"        # national format, read in --region
        "\n"
        "12345\n"                 # too short
        "+44 7400 123456,Bob\n"
    )
    scan = scan_recipients(str(path), "US")
    assert (scan.valid, scan.invalid) == (3, 2)
    source = MessageSource(3, 2, "hi", seed=1, recipients=str(path), region="US")
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
        scan_recipients(str(path), "US")


def test_pool_is_cached_and_the_same_every_time(tmp_path):
    first = PhonePool.for_region("GB", cache_dir=str(tmp_path))
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("prefixes-GB-")
    assert PhonePool.for_region("GB", cache_dir=str(tmp_path)) == first
    cached[0].write_text("garbage here\n")  # a broken cache is rebuilt, not trusted
    assert PhonePool.for_region("GB", cache_dir=str(tmp_path)) == first
    assert all(is_mobile(n, "GB") for n in first.draw(random.Random(1), 500))


def test_suffixes_are_uniform():
    from collections import Counter

    pool = PhonePool.build("US", random.Random(1))
    numbers = pool.draw(random.Random(5), 200_000)
    last_digit = Counter(n[-1] for n in numbers)
    assert all(abs(c / 200_000 - 0.1) < 0.005 for c in last_digit.values())
    first_suffix_digit = Counter(n[-4] for n in numbers)
    assert all(abs(c / 200_000 - 0.1) < 0.005 for c in first_suffix_digit.values())
    prefixes = Counter(n[:-4] for n in numbers)
    assert len(prefixes) == len(pool.prefixes) == 256
