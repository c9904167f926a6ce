"""The run over simulated time, in bins: what the report charts and --timeline writes.

Every mode feeds the same Timeline. Counts go into the bin of their
simulated time: final outcomes (sent, failed), retried attempts, and per
sender the attempts that ended there (and how many failed), with a histogram
of their send times (two significant figures, as Stats keeps them) for the
per-bin percentiles. States are sampled: the backlog (messages waiting,
retries pending included) and each sender's sends in flight, the last sample
in a bin standing for its end.

The bin width is chosen from an estimate of the run's length, and doubles
(neighbouring bins merged) whenever a time lands past MAX_BINS, so a run of
any size keeps between about 200 and 2,000 bins.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import TypedDict, TypeVar

from smsbatch.core.model import EXPIRED, FAILED, INTERRUPTED, RETRY, SENT, THROTTLED
from smsbatch.core.reach import SentHistogram
from smsbatch.core.settings import Settings
from smsbatch.core.stats import bucket_value
from smsbatch.core.text import sms_segments

_Sample = TypeVar("_Sample")


class TimelineTable(TypedDict):
    """The timeline as the summary holds it: one row per bin, one value per column."""

    columns: list[str]
    rows: list[list[float | None]]  # None: no sample (backlog) or no attempt (percentiles) in the bin


MAX_BINS = 2000
COUNTED = ("delivered", "throttled", "interrupted", "expired")  # the columns added after the percentiles
ROUND_NAMES = {THROTTLED: "throttled", INTERRUPTED: "interrupted", EXPIRED: "expired"}
TARGET_BINS = 1000
PERCENTILES = ((50, 0.50), (95, 0.95), (99, 0.99))


def estimated_makespan(settings: Settings, messages: int) -> float:
    """A rough length of the run in simulated seconds: messages over the senders'
    combined capacity, with retries, plus the slowest send and the backoffs."""
    senders = settings.senders
    if not senders:  # only senders elsewhere, of unknown speed
        return 60.0
    k = sms_segments(settings.text).count  # a cap counts segments, and a send takes k draws
    own = {id(s): min(s.window / (s.mean * k) if s.mean else math.inf, (s.rate or math.inf) / k) for s in senders}
    capacity = sum(own[id(s)] for s in senders if not s.account and not s.backup)
    for account in settings.accounts:  # an account's senders share its cap
        members = [own[id(s)] for s in senders if s.account == account.name and not s.backup]
        capacity += min(sum(members), account.rate / k) if members else 0.0
    if not capacity:  # only backups
        capacity = sum(own.values())
    fail = sum(s.fail_rate for s in senders) / len(senders)
    attempts = sum(fail**k for k in range(settings.max_retries + 1))
    work = 0.0 if math.isinf(capacity) else messages * attempts / capacity
    backoff = settings.retry_backoff * (2**settings.max_retries - 1) * 1.5 if settings.max_retries else 0.0
    return work + max(s.mean for s in senders) + backoff


def first_width(settings: Settings, messages: int) -> float:
    """A bin width that gives about TARGET_BINS bins for the run's estimated length."""
    return max(estimated_makespan(settings, messages) / TARGET_BINS, 1e-6)


class Timeline:
    def __init__(self, names: Sequence[str], width: float) -> None:
        self.names = list(names)
        self.width = width
        senders = len(self.names)
        self.sent: list[int] = []
        self.failed: list[int] = []
        self.retried: list[int] = []
        self.attempts: list[list[int]] = [[] for _ in range(senders)]
        self.failed_attempts: list[list[int]] = [[] for _ in range(senders)]
        self.histograms: list[dict[int, int]] = []
        self.backlog: list[int | None] = []
        self.in_flight: list[list[int] | None] = []
        # Gateways and receipts: per bin, messages delivered (by receipt), attempts
        # throttled or interrupted, messages expired; each sender's outages.
        self.counts: dict[str, list[int]] = {name: [] for name in COUNTED}
        self.receipts = False  # delivered fed by receipts; else delivered is sent (every acceptance at once)
        self.outages: list[list[tuple[float, float]]] = [[] for _ in range(senders)]

    # ---- feeding ----

    def add_count(self, name: str, t: float, count: int = 1) -> None:
        """`count` of COUNTED `name` (delivered, throttled, ...) at t."""
        b = self.bin_of(t)  # first: it may merge bins, and so replace the lists
        self.counts[name][b] += count

    def bin_of(self, t: float) -> int:
        index = int(max(t, 0.0) / self.width)
        while index >= MAX_BINS:
            self._coarsen()
            index = int(max(t, 0.0) / self.width)
        self._grow(index)
        return index

    def add_attempts(
        self,
        sender: int,
        t: float,
        bucket: int,
        outcome_counts: tuple[int, int, int],
        repeats: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        """Attempts of one sender ending at t, all in send-time `bucket` (stats.bucket_of):
        (sent, failed for good, to retry); `repeats`, the same for attempts at
        messages already counted (a redelivery): the sender's attempts, no
        message's outcome."""
        sent, failed, retry = outcome_counts
        count = sent + failed + retry + sum(repeats)
        b = self.bin_of(t)
        self.sent[b] += sent
        self.failed[b] += failed
        self.retried[b] += retry
        self.attempts[sender][b] += count
        self.failed_attempts[sender][b] += failed + retry + repeats[1] + repeats[2]
        histogram = self.histograms[b]
        histogram[bucket] = histogram.get(bucket, 0) + count

    def add_bin(
        self,
        t: float,
        sent: int,
        failed: int,
        retried: int,
        attempts: Sequence[int],
        failed_attempts: Sequence[int],
        histogram: dict[int, int],
    ) -> None:
        """Counts already gathered for the bin of `t` (virtual time closes its bins
        this way). `histogram` is the bin's from then on, when it is the bin's
        first (the caller made it for the bin: not copied)."""
        b = self.bin_of(t)
        self.sent[b] += sent
        self.failed[b] += failed
        self.retried[b] += retried
        for s, count in enumerate(attempts):
            self.attempts[s][b] += count
            self.failed_attempts[s][b] += failed_attempts[s]
        merged = self.histograms[b]
        if not merged:  # the bin's first counts (as virtual time gives them): taken whole
            self.histograms[b] = histogram
            return
        for bucket, count in histogram.items():
            merged[bucket] = merged.get(bucket, 0) + count

    def add_sender(self, name: str) -> None:
        """A sender that joined during the run (through Redis): zeros until then."""
        self.names.append(name)
        self.outages.append([])
        self.attempts.append([0] * len(self.sent))
        self.failed_attempts.append([0] * len(self.sent))
        for sample in self.in_flight:
            if sample is not None:
                sample.append(0)

    def sample(self, t: float, backlog: int, in_flight: Sequence[int]) -> None:
        b = self.bin_of(t)
        self.backlog[b] = backlog
        self.in_flight[b] = list(in_flight)

    def _grow(self, index: int) -> None:
        while len(self.sent) <= index:
            self.sent.append(0)
            self.failed.append(0)
            self.retried.append(0)
            for series in (*self.attempts, *self.failed_attempts):
                series.append(0)
            self.histograms.append({})
            self.backlog.append(None)
            self.in_flight.append(None)
            for series in self.counts.values():
                series.append(0)

    def _coarsen(self) -> None:
        """Twice as wide: neighbouring bins merged, counts added, the later sample kept."""

        def pairs(series: list[int]) -> list[int]:
            return [sum(series[i : i + 2]) for i in range(0, len(series), 2)]

        def later(series: list[_Sample | None]) -> list[_Sample | None]:
            return [
                series[i + 1] if i + 1 < len(series) and series[i + 1] is not None else series[i]
                for i in range(0, len(series), 2)
            ]

        self.sent, self.failed, self.retried = pairs(self.sent), pairs(self.failed), pairs(self.retried)
        self.attempts = [pairs(series) for series in self.attempts]
        self.failed_attempts = [pairs(series) for series in self.failed_attempts]
        self.histograms = [_merged(self.histograms[i : i + 2]) for i in range(0, len(self.histograms), 2)]
        self.backlog, self.in_flight = later(self.backlog), later(self.in_flight)
        self.counts = {name: pairs(series) for name, series in self.counts.items()}
        self.width *= 2

    # ---- reading ----

    def columns(self) -> list[str]:
        per_sender = [f"{name}:{what}" for name in self.names for what in ("attempts", "failed_attempts", "in_flight")]
        up = [f"{name}:up" for name in self.names]
        return ["t_s", "sent", "failed", "retried", "backlog", *per_sender, "p50_s", "p95_s", "p99_s", *COUNTED, *up]

    def rows(self, last_t: float | None = None) -> list[list[float | None]]:
        """One row per bin up to the last with anything in it (or up to `last_t`)."""
        count = len(self.sent)
        if last_t is not None:
            count = max(count, self.bin_of(last_t) + 1) if last_t > 0 else max(count, 1)
            self._grow(count - 1)
        rows: list[list[float | None]] = []
        totals = [0, 0, 0]
        counted = dict.fromkeys(COUNTED, 0)
        backlog: int | None = None
        in_flight = [0] * len(self.names)
        for b in range(count):
            totals = [totals[0] + self.sent[b], totals[1] + self.failed[b], totals[2] + self.retried[b]]
            for name in COUNTED:
                counted[name] += self.counts[name][b]
            if not self.receipts:
                counted["delivered"] = totals[0]
            backlog = self.backlog[b] if self.backlog[b] is not None else backlog
            in_flight = sample if (sample := self.in_flight[b]) is not None else in_flight
            per_sender = []
            for s in range(len(self.names)):
                per_sender += [self.attempts[s][b], self.failed_attempts[s][b], in_flight[s]]
            end = _round((b + 1) * self.width)
            up = [0 if any(start <= end < stop for start, stop in outages) else 1 for outages in self.outages]
            row = [end, *totals, backlog, *per_sender, *_percentiles(self.histograms[b]), *counted.values(), *up]
            rows.append(row)
        return rows

    def as_dict(self, last_t: float | None = None) -> TimelineTable:
        return {"columns": self.columns(), "rows": self.rows(last_t)}


class RunRecord:
    """A real-time run's figures, fed from the senders' reports as they come in,
    in any order: the timeline, the sent-count histogram behind the reach
    times, messages sent by the deadline, time held back by rate caps, lag."""

    def __init__(self, names: Sequence[str], width: float, deadline: float) -> None:
        self.timeline = Timeline(names, width)
        self.sent_times = SentHistogram()
        self.deadline = deadline
        self.sent_by_deadline = 0
        self.capped = [0.0] * len(self.timeline.names)
        self.lag = 0.0

    def add_sender(self, name: str) -> None:
        self.timeline.add_sender(name)
        self.capped.append(0.0)

    def record(
        self,
        sender: int,
        ended: Iterable[tuple[float, int, int, int]],
        capped: float,
        lag: float,
        repeats: dict[int, int] | None = None,
    ) -> None:
        """`ended`: (due, send-time bucket, outcome, count) of attempts that ended.
        `repeats`: by outcome, how many of them the ledger found to be about a
        message it had counted before (a redelivery). They stay this sender's
        attempts, but are not sent, failed or retried again: the timeline's
        totals, the reach times and the deadline count each message once, as
        the ledger does. A report does not say which of its attempts were the
        repeats: the first of that outcome are taken (a batch taken over is
        redone from its start)."""
        left = dict(repeats or {})
        for due, bucket, outcome, count in ended:
            repeated = min(count, left.get(outcome, 0))
            left[outcome] = left.get(outcome, 0) - repeated
            counted = count - repeated
            if outcome in ROUND_NAMES:  # throttled, interrupted, expired: no attempt's end
                self.timeline.add_count(ROUND_NAMES[outcome], due, counted)
                continue
            self.timeline.add_attempts(
                sender, due, bucket, _by_outcome(outcome, counted), _by_outcome(outcome, repeated)
            )
            if outcome == SENT and counted:
                self.sent_times.add(due, counted)
                if due <= self.deadline:
                    self.sent_by_deadline += counted
        self.capped[sender] += capped
        self.lag = max(self.lag, lag)


def _by_outcome(outcome: int, count: int) -> tuple[int, int, int]:
    """`count` attempts of `outcome` as (sent, failed for good, to retry)."""
    if outcome == SENT:
        return (count, 0, 0)
    if outcome == FAILED:
        return (0, count, 0)
    return (0, 0, count) if outcome == RETRY else (0, 0, 0)  # expired: no send, no failure for good


def _merged(histograms: list[dict[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for bucket, count in histogram.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return merged


def _percentiles(histogram: dict[int, int]) -> list[float | None]:
    total = sum(histogram.values())
    if not total:
        return [None] * len(PERCENTILES)
    found: list[float | None] = []
    seen = 0
    wanted = [fraction * total for _, fraction in PERCENTILES]
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        while wanted and seen >= wanted[0]:
            found.append(_round(bucket_value(bucket)))
            wanted.pop(0)
    while len(found) < len(PERCENTILES):
        found.append(_round(bucket_value(max(histogram))))
    return found


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def csv_text(timeline: TimelineTable) -> str:
    """The timeline as CSV: a header row of column names (quoted where needed), then the rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(timeline["columns"])
    for row in timeline["rows"]:
        writer.writerow("" if value is None else value for value in row)
    return out.getvalue()
