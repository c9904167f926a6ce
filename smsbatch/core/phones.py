"""Phone numbers: random valid mobiles for a region, or a recipients list.

Checking each number with `phonenumbers` costs ~20 us, far too slow for a
producer that must make over 500,000 a second. So the pool is checked once,
at start-up: it finds about a thousand number prefixes whose every completion
by four digits is a valid mobile number. Those prefixes and their 10,000
completions each are the region's pool; a run deals numbers from it without
replacement (a shuffle of the pool's indices fixed by the seed), so a run's
random numbers are all distinct, as a real list is. tests/test_phones.py
checks a sample of the result with the full validator.

A recipients list (a file, a pipe, a FIFO, standard input) is read once, in
blocks, before anything starts: each line is normalised to E.164, repeats of
a number are dropped, and the distinct numbers go to an unnamed temporary
file, 8 bytes each, from which any batch can be read again by its offset.
"""

from __future__ import annotations

import csv
import math
import os
import random
import stat
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import phonenumbers
from phonenumbers import PhoneNumberType

SUFFIX_DIGITS = 4
SUFFIX_COUNT: int = 10**SUFFIX_DIGITS
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
        for _, national in zip(range(MAX_TRIES), candidates, strict=False):
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
    mobile = metadata.mobile if metadata is not None else None
    possible = mobile.possible_length if mobile is not None and mobile.possible_length else ()
    lengths = [n for n in possible if n > SUFFIX_DIGITS]
    return lengths or [len(str(example.national_number))]


def _candidates(
    example: phonenumbers.PhoneNumber, lengths: list[int], found: list[str], rng: random.Random
) -> Iterator[str]:
    yield str(example.national_number)
    digits = "0123456789"
    while True:
        if found and rng.random() < 0.5:
            base = rng.choice(found).split("+", 1)[1]
            base = base[len(str(example.country_code)) :]  # national part of the prefix
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


BLOCK = 64 * 1024  # read size; a list with a NUL byte in a block is refused there
MAX_LINE = 4096  # an overlong line keeps only its start: enough to read a first column
SPOOL_CHUNK = 8192  # numbers written to the spool at a time
_HASH = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads runs of consecutive numbers


def recipients_is_stream(path: str) -> bool:
    """True if `path` can be read only once: standard input (`-`), a pipe, a
    FIFO, a process substitution, a terminal or other device. A missing file,
    or a directory, is not a stream (reading it will say what is wrong)."""
    if path == "-":
        return True
    try:
        mode = os.stat(path).st_mode
        return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
    except OSError:
        return False


class NumberSet:
    """A set of E.164 numbers held as integers (int64) in one array, by open
    addressing with linear probing.

    8 bytes a slot and the table kept between half and three quarters full:
    11 to 16 bytes per number (a Python set of ints costs 60 or more). While
    the table grows by half, the old one is held too, for a moment.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._slots = array("q", [0]) * capacity
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, number: int) -> bool:
        slots = self._slots
        slot = self._home(number, len(slots))
        while slots[slot]:
            if slots[slot] == number:
                return True
            slot = slot + 1 if slot + 1 < len(slots) else 0
        return False

    def add(self, number: int) -> bool:
        """Add `number` (> 0); True if it was not there before."""
        slots = self._slots
        size = len(slots)
        slot = self._home(number, size)
        while slots[slot]:
            if slots[slot] == number:
                return False
            slot = slot + 1 if slot + 1 < size else 0
        slots[slot] = number
        self._count += 1
        if 4 * self._count > 3 * size:
            self._grow()
        return True

    @staticmethod
    def _home(number: int, size: int) -> int:
        return ((number * _HASH) >> 32) % size

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("q", [0]) * (len(old) * 3 // 2)
        self._count = 0
        for number in old:
            if number:
                self.add(number)


@dataclass
class Recipients:
    """A recipients list's distinct valid numbers, in the order first seen,
    spooled as int64 to an unnamed temporary file (8 bytes each; the system
    deletes it when the last process holding it exits). Forked children share
    it, so the producer and the runner read any batch by its offset."""

    path: str
    spool: IO[bytes]
    valid: int = 0  # distinct valid numbers, in the spool
    invalid: int = 0  # lines that are not a valid number
    duplicates: int = 0  # valid lines repeating a number seen before

    def packed(self, start: int, stop: int) -> str:
        """Numbers [start, stop) in E.164 form, each ended by a newline."""
        numbers = array("q")
        numbers.frombytes(os.pread(self.spool.fileno(), 8 * (stop - start), 8 * start))
        return "".join([f"+{number}\n" for number in numbers])

    def numbers(self, start: int = 0, stop: int | None = None) -> list[str]:
        return self.packed(start, self.valid if stop is None else stop).split()

    def close(self) -> None:
        self.spool.close()


def read_recipients(path: str, region: str, limit: int | None = None) -> Recipients:
    """Read a recipients list once, from a file or a stream (`-` is standard
    input), stopping after `limit` distinct valid numbers if given. Memory
    grows with the distinct numbers only, never with the list's size.
    PhoneError if it cannot be read, is not text, or has no valid number."""
    try:
        # The spool outlives this function: the run's source holds it open.
        spool = tempfile.TemporaryFile(prefix="smsbatch-recipients-")  # noqa: SIM115
    except OSError as error:
        raise _no_spool(error) from None
    recipients = Recipients(path, spool)
    try:
        with _open_binary(path) as handle:
            _spool_numbers(recipients, _numbers(_lines(handle, path), region), limit)
    except OSError as error:  # reading errors are PhoneErrors already: this is the spool
        recipients.close()
        raise _no_spool(error) from None
    except BaseException:
        recipients.close()
        raise
    if not recipients.valid:
        recipients.close()
        raise PhoneError(f"no valid phone number in {list_name(path)} ({recipients.invalid} invalid lines)")
    return recipients


def _no_spool(error: OSError) -> PhoneError:
    return PhoneError(
        f"cannot keep its numbers in a temporary file in {tempfile.gettempdir()} "
        f"({error.strerror}); set TMPDIR to a writable directory"
    )


def _spool_numbers(recipients: Recipients, numbers: Iterable[int | None], limit: int | None) -> None:
    seen = NumberSet()
    pending = array("q")
    for number in numbers:
        if number is None:
            recipients.invalid += 1
        elif not seen.add(number):
            recipients.duplicates += 1
        else:
            pending.append(number)
            recipients.valid += 1
            if len(pending) == SPOOL_CHUNK:
                recipients.spool.write(pending.tobytes())
                del pending[:]
            if recipients.valid == limit:
                break  # a capped run: the rest is never needed
    recipients.spool.write(pending.tobytes())
    recipients.spool.flush()  # the forked producer reads it by descriptor


def _open_binary(path: str) -> IO[bytes]:
    try:
        if path == "-":
            return os.fdopen(os.dup(0), "rb", buffering=0)  # ours to close, not stdin
        return open(path, "rb", buffering=0)
    except OSError as error:
        raise PhoneError(f"cannot read {list_name(path)}: {error.strerror}") from None


def list_name(path: str) -> str:
    """How the start line and errors name a recipients list."""
    return "standard input" if path == "-" else path


def _lines(handle: IO[bytes], path: str) -> Iterator[str]:
    """The text lines of a binary stream, read a block at a time."""
    rest = b""
    while True:
        try:
            block = handle.read(BLOCK)
        except OSError as error:
            raise PhoneError(f"cannot read {list_name(path)}: {error.strerror}") from None
        if not block:
            break
        if b"\0" in block:  # a text list never has one; a sparse or binary file, at once
            raise PhoneError(f"{list_name(path)} is not a text file")
        lines = (rest + block).split(b"\n")
        rest = lines.pop()[:MAX_LINE]
        for line in lines:
            yield line[:MAX_LINE].decode("utf-8", errors="replace")
    if rest:
        yield rest.decode("utf-8", errors="replace")


def _numbers(lines: Iterable[str], region: str) -> Iterator[int | None]:
    """int(E.164 number), or None when invalid, for each non-blank line."""
    for line in lines:
        raw = _first_column(line)
        if raw:
            e164 = normalise(raw, region)
            yield int(e164[1:]) if e164 else None


def _first_column(line: str) -> str:
    line = line.lstrip("\ufeff")  # the byte order mark some editors put first
    if '"' not in line:
        return line.split(",", 1)[0].strip()
    try:
        row = next(csv.reader([line]), [])
    except csv.Error:
        return line.strip()  # not CSV after all: the whole line, found invalid
    return row[0].strip() if row else ""


def normalise(raw: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
