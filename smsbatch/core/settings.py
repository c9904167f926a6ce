"""The settings of a run and of a sender, and the one table of their fields.

`Settings` and `SenderSpec` are plain frozen values (config.py parses them;
nothing here reads text). Each has a table beside it, RUN_FIELDS and
SENDER_FIELDS, one row per field: what it means, whether it travels to
`smsbatch worker`, and how it appears in the summary's `settings` and in the
report. A field's type and default are the dataclass's. The worker's wire
format (broker/codec.py), the summary's `settings` (core/summary.py), the
report's settings table and the `--sender` keys (config.py) are all derived
from these tables; tests/test_settings_table.py fails when a field of a
dataclass has no row, or a row no field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, replace
from typing import Generic, TypeVar

from smsbatch.core.distributions import DEFAULT_DISTRIBUTION, DEFAULT_SPREAD

DEFAULT_TEXT = (
    "EMERGENCY ALERT: Flash flood warning in your area until 18:00. "
    "Move to higher ground now. Do not drive through flooded roads."
)


# What each field means, and where it goes, is its row in SENDER_FIELDS or RUN_FIELDS below.
@dataclass(frozen=True)
class SenderSpec:
    mean: float
    fail_rate: float
    name: str = ""
    distribution: str | None = None
    spread: float | None = None
    window: int = 1
    rate: float = 0.0
    account: str = ""
    dlr_median: float | None = None
    dlr_p90: float | None = None
    cap: float = 0.0
    burst: float = 0.0
    down: tuple[tuple[float, float], ...] = ()
    mtbf: float = 0.0
    mttr: float = 0.0
    backup: bool = False

    @property
    def bucket_size(self) -> float:
        """The gateway's token bucket: `burst` segments, by default max(1, cap)."""
        return self.burst or max(1.0, self.cap)

    @property
    def gateway(self) -> bool:
        """Does it have a gateway behaviour beyond the plain model (a cap with
        throttling answers, outages, or failover)?"""
        return bool(self.cap or self.down or self.mtbf or self.backup)

    def describe(self) -> str:
        return f"mean {self.mean:g}s, fail {self.fail_rate:.0%}"


@dataclass(frozen=True)
class AccountSpec:
    """A cap shared by every sender of the account (`--account NAME:rate=R`)."""

    name: str
    rate: float  # segments a second, over all its senders


@dataclass(frozen=True)
class Settings:
    messages: int
    senders: tuple[SenderSpec, ...]
    messages_given: bool = True
    text: str = DEFAULT_TEXT
    region: str = "US"
    recipients: str | None = None
    distribution: str = DEFAULT_DISTRIBUTION
    spread: float = DEFAULT_SPREAD
    interval: float = 1.0
    speed: float = 1.0
    seed: int = 0
    seed_given: bool = True
    summary_json: str | None = None
    progress: bool = True
    log_level: str = "WARNING"
    max_retries: int = 0
    retry_backoff: float = 1.0
    retry_backoff_given: bool = False  # set, by any source: with no retries, it changes nothing
    broker: str | None = None
    broker_timeout: float = 30.0
    claim_after: float = 10.0
    local_senders: bool = True
    replications: int = 1  # 0: --replications auto, until precise
    cluster: str | None = None  # a Dask scheduler: replications run on its workers
    precision: float = 0.01
    max_replications: int = 1000
    jobs: int = 1
    deadline: float = 600.0
    deadline_share: float = 0.9
    require_deadline: bool = False
    report: str | None = None
    timeline: str | None = None
    accounts: tuple[AccountSpec, ...] = ()
    dlr_median: float = 0.0
    dlr_p90: float = 0.0
    undeliverable: float = 0.0
    receipt_loss: float = 0.0
    throttle_pause: float = 1.0
    validity: float | None = None

    @property
    def gateway(self) -> bool:
        """Is any gateway behaviour modelled: throttling, outages, failover, validity?"""
        return self.validity is not None or any(spec.gateway for spec in self.senders)

    @property
    def receipts(self) -> bool:
        """Are delivery receipts modelled? With no receipt option, every accepted message is delivered at once."""
        return bool(self.dlr_median or self.dlr_p90 or self.undeliverable or self.receipt_loss) or any(
            spec.dlr_median is not None or spec.dlr_p90 is not None for spec in self.senders
        )

    def receipt_delay(self, spec: SenderSpec) -> tuple[float, float]:
        """(median, p90) of a sender's receipt delay: its own, else the run's."""
        median = self.dlr_median if spec.dlr_median is None else spec.dlr_median
        p90 = self.dlr_p90 if spec.dlr_p90 is None else spec.dlr_p90
        return median, max(p90, median)

    trace: str | None = None

    @property
    def virtual(self) -> bool:
        """--speed max: the model in virtual time, no real waiting."""
        return math.isinf(self.speed)

    def distribution_of(self, spec: SenderSpec) -> tuple[str, float]:
        return spec.distribution or self.distribution, (self.spread if spec.spread is None else spec.spread)

    def resolved(self, spec: SenderSpec) -> SenderSpec:
        """`spec` with the run's distribution and spread where it has none of its own."""
        distribution, spread = self.distribution_of(spec)
        return replace(spec, distribution=distribution, spread=spread)


@dataclass(frozen=True)
class WorkerSettings:
    broker: str
    senders: tuple[SenderSpec, ...]
    run_id: str | None = None  # None: whichever run is in progress, or the next
    once: bool = False
    broker_timeout: float = 30.0


# ---- the tables ----


def speed_shown(speed: float) -> float | str:
    """A speed as the summary holds it: virtual time is "max"."""
    return "max" if math.isinf(speed) else speed


Owner = TypeVar("Owner", Settings, SenderSpec)
Shown = Callable[[Owner], object]


@dataclass(frozen=True)
class FieldRow(Generic[Owner]):
    """One field of Settings or SenderSpec, beyond its type and default."""

    name: str
    help: str
    summary: tuple[tuple[str, Shown[Owner]], ...]  # its keys in the summary's settings, each with its value there
    worker: bool = False  # Settings: sent to `smsbatch worker` with the run (a SenderSpec travels whole)
    report: bool = False  # its summary keys are rows (Settings) or columns (SenderSpec) of the report's table
    per_sender: bool = False  # SenderSpec: also heads the sender's figures in the summary's `senders`


def _as(key: str, name: str) -> tuple[tuple[str, Shown[Owner]], ...]:
    """The summary holds the field under `key`, as it is."""
    return ((key, lambda owner: getattr(owner, name)),)


def _run(name: str, help: str, key: str | None = None, **facts: bool) -> FieldRow[Settings]:
    """A field the summary holds as it is, under `key` (None: not in the summary)."""
    return FieldRow(name, help, _as(key, name) if key else (), **facts)


def _sender(name: str, help: str, key: str, **facts: bool) -> FieldRow[SenderSpec]:
    return FieldRow(name, help, _as(key, name), report=True, **facts)


# In the summary's order: its `settings` keys follow this table.
RUN_FIELDS: tuple[FieldRow[Settings], ...] = (
    _run("messages", "messages to send", "messages", worker=True, report=True),
    _run("distribution", "the send-time distribution of senders without their own", "distribution",
         worker=True, report=True),
    _run("spread", "send-time standard deviation / mean of senders without their own", "spread",
         worker=True, report=True),
    _run("max_retries", "attempts after a failed one before a message counts as failed", "max_retries",
         worker=True, report=True),
    _run("retry_backoff", "simulated seconds before the first retry; doubles each time, jittered", "retry_backoff",
         worker=True, report=True),
    _run("seed", "the run's seed: every draw comes from it", "seed", worker=True, report=True),
    FieldRow(
        "speed",
        "speed-up factor of simulated time over real time; math.inf: virtual time (--speed max)",
        (
            ("speed", lambda s: speed_shown(s.speed)),
            ("mode", lambda s: "virtual" if s.virtual else "real-time"),
        ),
        worker=True,
        report=True,
    ),
    _run("deadline", "simulated seconds: the planner's target", "deadline_s"),
    _run("deadline_share", "the share of messages sent by the deadline that meets it", "deadline_share"),
    FieldRow(
        "replications",
        "independent runs, seeds derived from the seed; 0: auto, until the headline figure is precise",
        (("replications", lambda s: s.replications or "auto"),),
    ),
    _run("precision", "--replications auto: the 95% half-width of the headline figure, relative to its mean"),
    _run("max_replications", "--replications auto, plan and compare: at most this many replications"),
    _run("cluster", "a Dask scheduler's address: the replications run on its workers (the same figures)"),
    _run("region", "region of the random mobile numbers, and of local numbers in a recipients list", "region"),
    _run("recipients", "the recipients list, if any", "recipients"),
    FieldRow(
        "senders",
        "the senders here (a worker brings its own)",
        (("senders", lambda s: [sender_settings(s.resolved(spec)) for spec in s.senders]),),
    ),
    _run("messages_given", "False: the default count; a recipients list then sends to every number"),
    _run("text", "the alert text", worker=True),
    _run("interval", "real seconds between progress refreshes"),
    _run("seed_given", "False: a fresh seed, printed"),
    _run("summary_json", "the summary file is written here"),
    _run("progress", "the live progress display"),
    _run("log_level", "the log level of the senders and the run", worker=True),
    _run("broker", "a Redis URL: senders go through Redis Streams"),
    _run("broker_timeout", "real seconds to keep retrying an unreachable broker (a worker has its own)"),
    _run("claim_after", "real seconds without word before a sender's work is taken over", worker=True),
    _run("local_senders", "False: only workers on other machines send"),
    _run("jobs", "processes that run replications side by side"),
    _run("require_deadline", "a missed deadline exits with status 3"),
    _run("report", "an HTML report is written here"),
    _run("retry_backoff_given", "False: the default backoff (set with no retries, it earns a note)"),
    _run("timeline", "the timeline is written here as CSV"),
    _run("trace", "a row per attempt is written here as CSV (one run on this machine only)"),
    _run("dlr_median", "simulated seconds from acceptance to a receipt, median", "dlr_median_s",
         worker=True, report=True),
    _run("dlr_p90", "the same, 90th percentile (equal to the median: a constant delay)", "dlr_p90_s",
         worker=True, report=True),
    _run("undeliverable", "the share of accepted messages whose receipt says undeliverable", "undeliverable",
         worker=True, report=True),
    _run("receipt_loss", "the share of accepted messages whose receipt never comes", "receipt_loss",
         worker=True, report=True),
    _run("throttle_pause", "simulated seconds a sender takes no new work after a throttled answer",
         "throttle_pause_s", worker=True, report=True),
    _run("validity", "simulated seconds: a message not accepted by then expires; None: never", "validity_s",
         worker=True, report=True),
    FieldRow(
        "accounts",
        "shared caps: each account's segments a second, over all its senders (one machine only)",
        (("accounts", lambda s: {account.name: {"rate": account.rate} for account in s.accounts}),),
        report=True,
    ),
)  # fmt: skip

# In the summary's order; the fields with a default are the `--sender` keys (MEAN and FAIL_RATE come first, bare).
SENDER_FIELDS: tuple[FieldRow[SenderSpec], ...] = (
    _sender("name", "heads its column of the summary and its progress line", "name", per_sender=True),
    _sender("mean", "simulated seconds per send (0: no wait)", "mean_s", per_sender=True),
    _sender("fail_rate", "the share of attempts that fail", "fail_rate", per_sender=True),
    _sender("window", "sends in flight at once", "window", per_sender=True),
    FieldRow(
        "rate",
        "most sends started per simulated second; 0: no cap",
        (("rate", lambda spec: spec.rate or None),),
        report=True,
        per_sender=True,
    ),
    _sender("distribution", "its send-time distribution; None: the run's", "distribution"),
    _sender("spread", "its send-time standard deviation / mean; None: the run's", "spread"),
    _sender("dlr_median", "its receipts' median delay, simulated seconds; None: the run's", "dlr_median"),
    _sender("dlr_p90", "its receipts' 90th-percentile delay; None: the run's", "dlr_p90"),
    FieldRow(
        "account",
        "the account whose shared cap its starts also count against; '': none",
        (("account", lambda spec: spec.account or None),),
        report=True,
        per_sender=True,
    ),
    FieldRow(
        "cap",
        "segments a second its gateway accepts (a token bucket); 0: no limit",
        (("cap", lambda spec: spec.cap or None),),
        report=True,
        per_sender=True,
    ),
    FieldRow(
        "burst",
        "the token bucket's size, segments; 0: max(1, cap)",
        (("burst", lambda spec: spec.burst or None),),
        report=True,
    ),
    FieldRow(
        "down",
        "its outages, (start, duration) in simulated seconds",
        (("down", lambda spec: [f"{start:g}+{duration:g}" for start, duration in spec.down] or None),),
        report=True,
    ),
    _sender("mtbf", "mean simulated seconds between random outages; 0: none", "mtbf_s"),
    _sender("mttr", "mean simulated seconds a random outage lasts", "mttr_s"),
    _sender("backup", "takes work only while every sender that is not a backup is down", "backup",
            per_sender=True),
)  # fmt: skip


def sender_keys() -> tuple[str, ...]:
    """The key=value fields of a --sender spec: every field with a default, in the table's order."""
    defaults = {f.name for f in fields(SenderSpec) if f.default is not MISSING}
    return tuple(row.name for row in SENDER_FIELDS if row.name in defaults)


def worker_fields() -> tuple[str, ...]:
    """The run's settings a worker's senders are given (their specs are the worker's own)."""
    return tuple(row.name for row in RUN_FIELDS if row.worker)


def _rows(table: tuple[FieldRow[Owner], ...], only: dict[str, bool]) -> list[FieldRow[Owner]]:
    """The rows with every fact in `only` (report=True, per_sender=True, ...)."""
    return [row for row in table if all(getattr(row, fact) == wanted for fact, wanted in only.items())]


def summary_keys(table: tuple[FieldRow[Owner], ...], **only: bool) -> tuple[str, ...]:
    """The summary keys of the rows with every fact in `only`, in the summary's order."""
    return tuple(key for row in _rows(table, only) for key, _ in row.summary)


def sender_settings(spec: SenderSpec, **only: bool) -> dict[str, object]:
    """A sender's settings as the summary holds them (of the rows with every fact in `only`)."""
    return {key: shown(spec) for row in _rows(SENDER_FIELDS, only) for key, shown in row.summary}


def run_settings(settings: Settings) -> dict[str, object]:
    """The run's settings as the summary holds them."""
    return {key: shown(settings) for row in RUN_FIELDS for key, shown in row.summary}
