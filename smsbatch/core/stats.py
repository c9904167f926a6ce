"""Send statistics: pure, mergeable, testable without processes or clocks.

A sender records each finished attempt; every few milliseconds it ships the
Stats it gathered (a delta) and starts a fresh one. The monitor merges the
deltas per sender. Send times go into buckets rounded to two significant
figures (as Locust does), so percentiles are cheap and memory stays flat no
matter how many messages a run sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_ZERO_BUCKET = 0
_RESOLUTION = 1e-9  # shorter sends count as zero: no clock here measures less
_EXPONENT_OFFSET = 30  # keeps bucket keys positive
_LOWEST_POWER = -12  # the table of powers of ten, from 10^-12 on
# 10^k for every exponent a bucket divides by, each the double nearest it (read from its decimal form): one
# table for bucket_of and buckets_of alike. Neither 10.0 ** k (libm: 10^23 an ulp off) nor np.power (which
# on some CPUs is an ulp off at 10^-5 and others) is that everywhere, and a send time at a half of the second
# figure then rounds one way in one path and the other way in the other.
_TEN_TO = [float(f"1e{k}") for k in range(_LOWEST_POWER, 309)]
_POWERS: np.ndarray | None = None
_DECADES: np.ndarray | None = None
_PIECE = 16384  # buckets_of works on this many send times at a time
_DENSE = 1024  # buckets in use spanning fewer keys than this are counted densely (8 KB: three decades)


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a send time: two significant figures, packed in an int."""
    if seconds < _RESOLUTION:
        return _ZERO_BUCKET
    exponent = math.floor(math.log10(seconds))
    mantissa = round(seconds / _TEN_TO[exponent - 1 - _LOWEST_POWER])  # 10..100
    if mantissa >= 100:
        mantissa, exponent = 10, exponent + 1
    return (exponent + _EXPONENT_OFFSET) * 100 + mantissa


def buckets_of(seconds: np.ndarray) -> np.ndarray:
    """bucket_of() for a whole array at once."""
    import numpy as np  # here: a run with nothing to draw never loads it

    global _POWERS, _DECADES
    if _POWERS is None or _DECADES is None:
        _POWERS = np.array(_TEN_TO)
        # For each biased binary exponent b (a double in [2^(b-1023), 2^(b-1022))): floor(log10(2^(b-1023))),
        # as the index in _POWERS of 10 to one less (see _buckets_in_range).
        binary = np.arange(2048, dtype=np.float64) - 1023.0
        _DECADES = (np.floor(binary * math.log10(2.0)) - 1 - _LOWEST_POWER).astype(np.int64)
    seconds = np.asarray(seconds, dtype=np.float64)
    if len(seconds) and seconds.min() >= _RESOLUTION and seconds.max() < 1e298:
        if len(seconds) <= _PIECE:
            return _buckets_in_range(seconds, _POWERS, _DECADES)
        found = np.empty(len(seconds), dtype=np.int64)
        for i in range(0, len(seconds), _PIECE):  # a piece's temporaries stay in the cache: twice as fast
            found[i : i + _PIECE] = _buckets_in_range(seconds[i : i + _PIECE], _POWERS, _DECADES)
        return found
    return buckets_by_log(seconds)


def buckets_by_log(seconds: np.ndarray) -> np.ndarray:
    """bucket_of() for an array, by the definition (the exponent from log10): any
    send times, the slow way (buckets_of's for what its table does not hold)."""
    import numpy as np

    tiny = seconds < _RESOLUTION
    safe = np.where(tiny, 1.0, seconds)
    exponent = np.floor(np.log10(safe))
    mantissa = np.round(safe / np.array(_TEN_TO)[exponent.astype(np.int64) - 1 - _LOWEST_POWER])
    rolled = mantissa >= 100
    mantissa = np.where(rolled, 10, mantissa)
    exponent = exponent + rolled
    return np.where(tiny, _ZERO_BUCKET, (exponent + _EXPONENT_OFFSET) * 100 + mantissa).astype(np.int64)


def _buckets_in_range(seconds: np.ndarray, powers: np.ndarray, decades: np.ndarray) -> np.ndarray:
    """buckets_of() where every send time is at least the resolution and has a
    power of ten in the table: the same buckets in fewer passes (this runs on
    every attempt of --speed max), in place where they can be. The decimal
    exponent comes from the binary one (the float's bits), which leaves two
    choices, and one comparison with the table picks (log10 costs twice the
    rest). Where it and log10 could differ, a hair from a power of ten, they
    give the same bucket: 10^k - e at exponent k is 10 there, at k - 1 it is
    100, which rolls over to the same (k + 30) * 100 + 10."""
    import numpy as np

    bucket: np.ndarray = decades[seconds.view(np.int64) >> 52]  # the index of 10^(exponent - 1), or one short
    bucket += seconds >= powers[bucket + 2]  # (at or past the next power of ten: the exponent is one more)
    mantissa = seconds / powers[bucket]
    np.rint(mantissa, out=mantissa)  # np.round's rounding (half to even), as round() has it: 10..100
    bucket += 1 + _LOWEST_POWER + _EXPONENT_OFFSET
    bucket *= 100
    bucket += mantissa.astype(np.int64)
    bucket[mantissa == 100.0] += 10  # 100 rolls over to the next power's 10: (exponent + 1) * 100 + 10
    return bucket


def bucket_value(bucket: int) -> float:
    """The send time a bucket stands for."""
    if bucket == _ZERO_BUCKET:
        return 0.0
    exponent, mantissa = divmod(bucket, 100)
    return mantissa * 10.0 ** (exponent - _EXPONENT_OFFSET - 1)


@dataclass(slots=True)
class Stats:
    """Counts of finished attempts and their simulated send times."""

    attempts: int = 0
    sent: int = 0  # attempts that succeeded
    failed: int = 0  # attempts that failed (a retried message can fail more than once)
    time_sum: float = 0.0
    buckets: dict[int, int] = field(default_factory=dict)
    first_end: float = math.inf  # simulated time the first recorded attempt ended
    last_end: float = -math.inf  # ... and the last
    # Attempts a gateway answered throttled, or its outage cut short: not attempts
    # above (no send time, not a failure), the message went round again.
    throttled: int = 0
    interrupted: int = 0

    def record(self, seconds: float, ok: bool, ended_at: float | None = None, bucket: int | None = None) -> None:
        """One attempt; `bucket`: bucket_of(seconds), if the caller has it already."""
        if ended_at is not None:
            self.first_end = min(self.first_end, ended_at)
            self.last_end = max(self.last_end, ended_at)
        self.attempts += 1
        if ok:
            self.sent += 1
        else:
            self.failed += 1
        self.time_sum += seconds
        if bucket is None:
            bucket = bucket_of(seconds)
        self.buckets[bucket] = self.buckets.get(bucket, 0) + 1

    def record_block(self, seconds: np.ndarray, failed: np.ndarray) -> None:
        """Attempts given as arrays of send times and failure flags (no end times)."""
        if not len(seconds):
            return
        self.record_totals(seconds, failed)
        found = BucketCounts()
        found.add_times(seconds)
        found.into(self.buckets)

    def record_totals(self, seconds: np.ndarray, failed: np.ndarray) -> None:
        """record_block's counts and time sum, without the buckets (the caller counts them: BucketCounts)."""
        import numpy as np

        count, fails = len(seconds), int(np.count_nonzero(failed))
        self.attempts += count
        self.sent += count - fails
        self.failed += fails
        self.time_sum += float(seconds.sum())

    def record_same(self, seconds: float, count: int, failed: int) -> None:
        """`count` attempts that all took `seconds`, `failed` of them failed (no end times)."""
        self.attempts += count
        self.sent += count - failed
        self.failed += failed
        self.time_sum += seconds * count
        bucket = bucket_of(seconds)
        self.buckets[bucket] = self.buckets.get(bucket, 0) + count

    def forget(self, seconds: float, ok: bool) -> None:
        """Take back one attempt recorded before (it never finished)."""
        self.attempts -= 1
        if ok:
            self.sent -= 1
        else:
            self.failed -= 1
        self.time_sum -= seconds
        bucket = bucket_of(seconds)
        self.buckets[bucket] -= 1
        if not self.buckets[bucket]:
            del self.buckets[bucket]

    def merge(self, other: Stats) -> Stats:
        """Add `other` into this one, in place; returns self."""
        self.attempts += other.attempts
        self.sent += other.sent
        self.failed += other.failed
        self.time_sum += other.time_sum
        self.first_end = min(self.first_end, other.first_end)
        self.last_end = max(self.last_end, other.last_end)
        self.throttled += other.throttled
        self.interrupted += other.interrupted
        for bucket, count in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + count
        return self

    def __add__(self, other: Stats) -> Stats:
        return Stats().merge(self).merge(other)

    @property
    def mean(self) -> float:
        return self.time_sum / self.attempts if self.attempts else 0.0

    @property
    def rate(self) -> float:
        """Attempts per simulated second, between the first and the last end."""
        span = self.last_end - self.first_end
        return (self.attempts - 1) / span if self.attempts > 1 and span > 0 else 0.0

    def percentile(self, fraction: float) -> float:
        """The send time below which `fraction` of the attempts fall (bucket precision)."""
        if not self.attempts:
            return 0.0
        rank = fraction * self.attempts
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return bucket_value(bucket)
        return bucket_value(max(self.buckets))

    def snapshot(self) -> dict[str, float | int]:
        return {
            "attempts": self.attempts,
            "sent": self.sent,
            "failed": self.failed,
            "avg_send_time_s": self.mean,
            "p50_s": self.percentile(0.50),
            "p95_s": self.percentile(0.95),
            "p99_s": self.percentile(0.99),
        }


class BucketCounts:
    """Counts of send-time buckets, dense over the range in use: a block of
    attempts is added by one bincount, not key by key into a dict (virtual
    time folds every attempt so); into() adds them to a Stats' buckets."""

    __slots__ = ("counts", "low", "spill")

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None  # counts[i]: of bucket low + i
        self.low = 0
        self.spill: dict[int, int] = {}  # what the range does not hold (send times decades apart)

    def add_times(self, seconds: np.ndarray) -> None:
        """The buckets of these send times (buckets_of's, as the fast path gives
        them: never bucket_of's, which could be an ulp apart on another numpy)."""
        if not len(seconds):
            return
        shortest, longest = float(seconds.min()), float(seconds.max())
        if shortest == longest:  # constant times (zero wait): one bucket
            bucket = int(buckets_of(seconds[:1])[0])
            self.spill[bucket] = self.spill.get(bucket, 0) + len(seconds)
        else:
            self.add(buckets_of(seconds))

    def add(self, found: np.ndarray) -> None:
        """Buckets found (buckets_of's), one count each."""
        import numpy as np

        if not len(found):
            return
        low, high = int(found.min()), int(found.max())
        if self.counts is not None:
            low, high = min(low, self.low), max(high, self.low + len(self.counts) - 1)
        if high - low >= _DENSE:  # too wide to hold densely (the zero bucket and tens of ms, say): key by key
            keys, counts = np.unique(found, return_counts=True)
            for bucket, n in zip(keys.tolist(), counts.tolist(), strict=True):
                self.spill[bucket] = self.spill.get(bucket, 0) + n
            return
        if self.counts is None or low < self.low or high >= self.low + len(self.counts):
            grown = np.zeros(high - low + 1, dtype=np.int64)
            if self.counts is not None:
                grown[self.low - low : self.low - low + len(self.counts)] = self.counts
            self.counts, self.low = grown, low
        self.counts += np.bincount(found - self.low, minlength=len(self.counts))

    def into(self, buckets: dict[int, int]) -> None:
        import numpy as np

        for bucket, n in self.spill.items():
            buckets[bucket] = buckets.get(bucket, 0) + n
        if self.counts is not None:
            keys = np.flatnonzero(self.counts)
            for bucket, n in zip((keys + self.low).tolist(), self.counts[keys].tolist(), strict=True):
                buckets[bucket] = buckets.get(bucket, 0) + n


def wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): inside [0, 1]
    whatever the count, and honest at 0 of n or n of n, where the normal
    approximation says [1, 1]."""
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    z2n = z * z / trials
    center = (share + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(share * (1 - share) / trials + z2n / (4 * trials)) / (1 + z2n)
    return max(0.0, center - half), min(1.0, center + half)
