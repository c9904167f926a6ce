"""Phone numbers: random valid mobiles for a region, or a recipients list.

Checking each number with `phonenumbers` costs ~20 us, far too slow for a
producer that must make over 500,000 a second. So the pool is checked once,
at start-up: it finds about a thousand number prefixes whose every completion
by four digits is a valid mobile number. Those prefixes and their 10,000
completions each are the region's pool; a run deals numbers from it without
replacement (a shuffle of the pool's indices fixed by the seed), so a run's
random numbers are all distinct, as a real list is. tests/test_phones.py
checks a sample of the result with the full validator.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

SUFFIX_DIGITS = 4
SUFFIX_COUNT = 10**SUFFIX_DIGITS
SUFFIXES = tuple(f"{i:0{SUFFIX_DIGITS}d}\n" for i in range(SUFFIX_COUNT))  # newline-ended
MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
# 1024 prefixes: 10,240,000 distinct numbers in a big region, found in about
# 0.3 s once (then cached); 4096 would take over a second for a first run.
POOL_SIZE = 1024
MAX_TRIES = 200_000


class PhoneError(ValueError):
    """A region or recipients file that cannot give any number to send to."""


def is_mobile(e164: str, region: str | None = None) -> bool:
    """True if `e164` is a valid mobile number (of `region`, when given)."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(number)
        and phonenumbers.number_type(number) in MOBILE_TYPES
        and (region is None or phonenumbers.region_code_for_number(number) == region)
    )


@dataclass(frozen=True)
class PhonePool:
    """Prefixes that make a valid mobile number with any four final digits.

    The pool is every such number: index j is prefix j // 10,000 followed by
    the four digits of j % 10,000.
    """

    region: str
    prefixes: tuple[str, ...]

    @property
    def size(self) -> int:
        """How many distinct numbers the pool holds."""
        return len(self.prefixes) * SUFFIX_COUNT

    @classmethod
    def build(cls, region: str, rng: random.Random, size: int = POOL_SIZE) -> PhonePool:
        example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
        if example is None:
            raise PhoneError(f"no mobile numbers are known for region {region!r}")
        country = f"+{example.country_code}"
        lengths = _mobile_lengths(region, example)
        found: list[str] = []
        seen: set[str] = set()
        # Start from the region's own example; then half the candidates are
        # fresh random numbers (spread), half are neighbours of prefixes
        # already found (dense mobile ranges are found fast that way).
        candidates = _candidates(example, lengths, found, rng)
        for _, national in zip(range(MAX_TRIES), candidates):
            prefix = country + national[:-SUFFIX_DIGITS]
            if prefix not in seen and _prefix_is_mobile(prefix, region, rng):
                found.append(prefix)
                if len(found) == size:
                    break
            seen.add(prefix)
        if not found:
            raise PhoneError(f"could not find mobile number ranges for region {region!r}")
        return cls(region, tuple(found))

    @classmethod
    def for_region(cls, region: str, cache_dir: str | None = None) -> PhonePool:
        """The region's pool: always the same one (built from a fixed seed), read
        from a cache file after the first build, so start-up stays fast."""
        cache_dir = cache_dir if cache_dir is not None else _cache_dir()
        path = os.path.join(cache_dir, f"prefixes-{region}-{POOL_SIZE}-{phonenumbers.__version__}.txt")
        try:
            with open(path, encoding="ascii") as handle:
                prefixes = tuple(handle.read().split())
            if prefixes and all(p.startswith("+") and p[1:].isdigit() for p in prefixes):
                return cls(region, prefixes)
        except (OSError, UnicodeDecodeError):
            pass  # no cache yet, or a broken one: build
        pool = cls.build(region, random.Random(f"pool/{region}"))
        try:
            os.makedirs(cache_dir, exist_ok=True)
            with open(path + f".{os.getpid()}", "w", encoding="ascii") as handle:
                handle.write("\n".join(pool.prefixes) + "\n")
            os.replace(path + f".{os.getpid()}", path)  # whole or not at all
        except OSError:
            pass  # a read-only home: build every time, that is all
        return pool

    def numbers(self, seed: int, ids: range) -> list[str]:
        """The E.164 numbers of messages `ids` of the run with `seed`."""
        return self.numbers_packed(seed, ids).split()

    def numbers_packed(self, seed: int, ids: range) -> str:
        """The numbers of messages `ids`, each ended by a newline, in one string.

        Message i gets pool index (a*i + b) mod size, a permutation of the
        pool (a is coprime with its size), so no two messages of a run share a
        number, and message i's number depends on (seed, i) alone: any batch
        is made again the same, whatever the batch size.
        """
        step, offset = self.shuffle(seed)
        size, prefixes = self.size, self.prefixes
        packed = []
        for message_id in ids:
            high, low = divmod((step * message_id + offset) % size, SUFFIX_COUNT)
            packed.append(prefixes[high])
            packed.append(SUFFIXES[low])
        return "".join(packed)

    def shuffle(self, seed: int) -> tuple[int, int]:
        """(a, b) of the run's permutation i -> (a*i + b) mod size."""
        rng = random.Random(f"{seed}/numbers/{self.size}")
        step = rng.randrange(1, self.size)
        while math.gcd(step, self.size) != 1:
            step = rng.randrange(1, self.size)
        return step, rng.randrange(self.size)


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "smsbatch")


def _mobile_lengths(region: str, example: phonenumbers.PhoneNumber) -> list[int]:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    lengths = [n for n in metadata.mobile.possible_length if n > SUFFIX_DIGITS]
    return lengths or [len(str(example.national_number))]


def _candidates(example, lengths, found, rng):
    yield str(example.national_number)
    digits = "0123456789"
    while True:
        if found and rng.random() < 0.5:
            base = rng.choice(found).split("+", 1)[1]
            base = base[len(str(example.country_code)):]  # national part of the prefix
            keep = max(1, len(base) - rng.randint(1, 3))
            tail = len(base) + SUFFIX_DIGITS - keep
            yield base[:keep] + "".join(rng.choices(digits, k=tail))
        else:
            length = rng.choice(lengths)
            yield rng.choice("123456789") + "".join(rng.choices(digits, k=length - 1))


def _prefix_is_mobile(prefix: str, region: str, rng: random.Random) -> bool:
    # The lowest and highest completions, and two at random: mobile ranges
    # in the metadata end in free digits, so these stand for all 10,000.
    suffixes = ("0" * SUFFIX_DIGITS, "9" * SUFFIX_DIGITS, rng.choice(SUFFIXES)[:-1], rng.choice(SUFFIXES)[:-1])
    return all(is_mobile(prefix + suffix, region) for suffix in suffixes)


@dataclass(frozen=True)
class RecipientsScan:
    valid: int
    invalid: int


def read_recipients(text: str, region: str):
    """Yield (E.164 number or None when invalid) for each non-blank line.

    A line is a number, or a CSV row whose first column is the number.
    """
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip():
            continue
        yield normalise(row[0].strip(), region)


def normalise(raw: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def load_recipients_text(path: str) -> str:
    """The file's text; PhoneError when it cannot be read or is not text."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise PhoneError(f"cannot read {path}: {error.strerror}") from None
    if b"\0" in data:
        raise PhoneError(f"{path} is not a text file")
    return data.decode("utf-8", errors="replace")


def scan_recipients(path: str, region: str) -> RecipientsScan:
    valid = invalid = 0
    for number in read_recipients(load_recipients_text(path), region):
        if number is None:
            invalid += 1
        else:
            valid += 1
    if not valid:
        raise PhoneError(f"no valid phone number in {path} ({invalid} invalid lines)")
    return RecipientsScan(valid, invalid)
