"""Configuration: one parser for ini file, command line and environment, and a
frozen Settings object validated once, here at the edge.

Every option has an env var SMSBATCH_<OPTION>; the command line beats the
environment, which beats the config file. Any bad value raises UsageError with
one line naming the option and the rule.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass

import configargparse
import phonenumbers

from smsbatch.distributions import DEFAULT_DISTRIBUTION, DEFAULT_SPREAD, DISTRIBUTIONS, MAX_SPREAD

MAX_MESSAGES = 1_000_000_000
MAX_SENDERS = 1024
MAX_WINDOW = 100_000
MAX_SECONDS = 86_400.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_TEXT = (
    "EMERGENCY ALERT: Flash flood warning in your area until 18:00. "
    "Move to higher ground now. Do not drive through flooded roads."
)
# Chosen so that a plain `smsbatch` (1000 messages) ends in about 25 s.
DEFAULT_SENDERS = ("0.05:0.01", "0.08:0.03", "0.15:0.05", "0.4:0.2")


class UsageError(Exception):
    """Bad input; the message is the one line shown to the user."""


@dataclass(frozen=True)
class SenderSpec:
    mean: float  # simulated seconds per send
    fail_rate: float
    name: str = ""
    distribution: str | None = None  # None: the run's --distribution
    spread: float | None = None  # None: the run's --spread
    window: int = 1  # sends in flight at once
    rate: float = 0.0  # most sends started per simulated second; 0: no cap

    def describe(self) -> str:
        return f"mean {self.mean:g}s, fail {self.fail_rate:.0%}"


@dataclass(frozen=True)
class Settings:
    messages: int
    senders: tuple[SenderSpec, ...]
    messages_given: bool = True  # False: the default; --recipients then sends to every number
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
    broker: str | None = None  # a Redis URL: senders go through Redis Streams
    broker_timeout: float = 30.0  # real seconds to keep retrying an unreachable broker
    claim_after: float = 10.0  # real seconds without word before a sender's work is taken over
    local_senders: bool = True  # False: only workers on other machines send
    replications: int = 1
    jobs: int = 1  # processes that run replications side by side

    @property
    def virtual(self) -> bool:
        """--speed max: the model in virtual time, no real waiting."""
        return math.isinf(self.speed)

    def distribution_of(self, spec: SenderSpec) -> tuple[str, float]:
        return spec.distribution or self.distribution, (
            self.spread if spec.spread is None else spec.spread
        )


# ---- value rules: each raises ValueError with the rule, in words ----


def whole_number(low: int, high: int):
    def parse(text: str) -> int:
        text = str(text).strip()
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return parse


def real_number(low: float, high: float, low_open: bool = False):
    def parse(text: str) -> float:
        above = f"above {low:g}" if low_open else f"at least {low:g}"
        rule = f"must be a number {above} and at most {high:g}"
        try:
            value = float(str(text).strip())
        except ValueError:
            raise ValueError(rule) from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise ValueError(rule)
        return value

    return parse


parse_mean = real_number(0.0, MAX_SECONDS)
parse_fail_rate = real_number(0.0, 1.0)
parse_window = whole_number(1, MAX_WINDOW)
parse_rate = real_number(0.0, 1e9, low_open=True)
parse_spread = real_number(0.0, 1000.0)


def parse_broker_url(text: str) -> str:
    """A Redis URL, checked here without importing the Redis client."""
    from urllib.parse import urlsplit

    text = str(text).strip()
    rule = "must be a Redis URL such as redis://localhost:6379/0"
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(rule) from None
    if url.scheme not in ("redis", "rediss", "unix") or (url.scheme != "unix" and not url.hostname):
        raise ValueError(rule)
    database = url.path.strip("/")
    if url.scheme != "unix" and database and not database.isdigit():
        raise ValueError(rule + " (the path is a database number)")
    return text


def parse_speed(text: str) -> float:
    """A positive speed-up factor, or `max`: virtual time (math.inf)."""
    if str(text).strip().lower() == "max":
        return math.inf
    try:
        return real_number(0.0, 1e6, low_open=True)(text)
    except ValueError:
        raise ValueError("must be a number above 0 and at most 1e+06, or max") from None


def parse_distribution(text: str) -> str:
    if text not in DISTRIBUTIONS:
        raise ValueError(f"must be one of {', '.join(DISTRIBUTIONS)}")
    return text


SENDER_FIELDS = {
    "name": str,
    "window": parse_window,
    "rate": parse_rate,
    "distribution": parse_distribution,
    "spread": parse_spread,
}


def parse_sender(text: str) -> SenderSpec:
    """MEAN:FAIL_RATE[:key=value...], e.g. `0.5:0.25` or `1:0.05:window=1000:rate=500`."""
    parts = [part.strip() for part in str(text).split(":")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("must be MEAN:FAIL_RATE[:key=value...], e.g. 0.5:0.25")
    try:
        mean = parse_mean(parts[0])
    except ValueError as error:
        raise ValueError(f"MEAN {error} (seconds)") from None
    try:
        fail_rate = parse_fail_rate(parts[1])
    except ValueError as error:
        raise ValueError(f"FAIL_RATE {error}") from None
    fields: dict[str, object] = {}
    for part in parts[2:]:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in SENDER_FIELDS:
            raise ValueError(
                f"extra fields must be key=value with key one of {', '.join(SENDER_FIELDS)}"
            )
        if key in fields:
            raise ValueError(f"field {key} given twice")
        value = value.strip()
        if key == "name" and not value:
            raise ValueError("name must not be empty")
        try:
            fields[key] = SENDER_FIELDS[key](value)
        except ValueError as error:
            raise ValueError(f"{key} {error}") from None
    return SenderSpec(mean, fail_rate, **fields)


def parse_region(text: str) -> str:
    region = str(text).strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be a two-letter region code such as US, GB or DE")
    return region


def parse_text(text: str) -> str:
    if not str(text).strip():
        raise ValueError("must not be empty")
    if len(text) > 1600:
        raise ValueError("must be at most 1600 characters (10 SMS segments)")
    return str(text)


def _typed(rule):
    """Wrap a rule for argparse, which shows ArgumentTypeError messages as they are."""

    def parse(text: str):
        try:
            return rule(text)
        except ValueError as error:
            raise configargparse.ArgumentTypeError(f"{error} (got {text!r})") from None

    parse.__name__ = getattr(rule, "__name__", "value")
    return parse


class _Parser(configargparse.ArgParser):
    def error(self, message: str):  # one line, no usage block, no SystemExit
        if message.startswith("Unable to open config file"):
            message = "argument -c/--config: " + message.split(". Error: ")[0].lower()
        raise UsageError(message)


BROKER_TIMEOUT = dict(
    env="BROKER_TIMEOUT", type=_typed(real_number(0.0, MAX_SECONDS)), default=30.0,
    help="with --broker: seconds to keep retrying an unreachable broker before giving up",
)


def build_parser(default_config_files=()) -> configargparse.ArgParser:
    parser = _Parser(
        prog="smsbatch",
        description="Simulate an SMS alert blast through a set of senders and watch it go.",
        default_config_files=list(default_config_files),
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )

    def option(*flags, env: str, **kwargs):
        parser.add_argument(*flags, env_var=f"SMSBATCH_{env}", **kwargs)

    option("-c", "--config", env="CONFIG", is_config_file=True, help="ini file with any of these options")
    option("-n", "--messages", env="MESSAGES", type=_typed(whole_number(1, MAX_MESSAGES)),
           default=None, help="messages to send [1000; with --recipients: one per valid number]")
    option("--text", env="TEXT", type=_typed(parse_text), default=DEFAULT_TEXT, help="the alert text")
    option("--region", env="REGION", type=_typed(parse_region), default="US",
           help="region of the random mobile numbers, and of local numbers in --recipients")
    option("--recipients", env="RECIPIENTS", metavar="FILE",
           help="send to the numbers in FILE (one per line, or first CSV column) instead")
    option("--sender", env="SENDER", action="append", type=_typed(parse_sender), metavar="SPEC",
           help="MEAN:FAIL_RATE[:key=value...], repeatable; keys: "
                "name, window, rate, distribution, spread "
                f"[default set: {' '.join(DEFAULT_SENDERS)}]")
    option("--distribution", env="DISTRIBUTION", type=_typed(parse_distribution),
           default=DEFAULT_DISTRIBUTION, help=f"send-time distribution: {', '.join(DISTRIBUTIONS)}")
    option("--spread", env="SPREAD", type=_typed(parse_spread), default=DEFAULT_SPREAD,
           help="send-time standard deviation / mean (normal, lognormal, uniform)")
    option("--interval", env="INTERVAL", type=_typed(real_number(0.0, 3600.0, low_open=True)),
           default=1.0, help="seconds between progress refreshes")
    option("--speed", env="SPEED", type=_typed(parse_speed), default=1.0,
           help="speed-up factor: simulated waits take 1/SPEED of real time; "
                "max: the model in virtual time, no waiting")
    option("--replications", env="REPLICATIONS", type=_typed(whole_number(1, 10_000)), default=1,
           help="independent runs with seeds derived from --seed; the summary gives mean and 95%% interval")
    option("--jobs", env="JOBS", type=_typed(whole_number(1, 256)), default=None,
           help="processes running replications side by side [the number of cores]")
    option("--seed", env="SEED", type=_typed(whole_number(0, 2**63 - 1)), default=None,
           help="seed for a reproducible run [a fresh one, printed]")
    option("--summary-json", env="SUMMARY_JSON", metavar="PATH", help="write the summary here")
    option("--no-progress", env="NO_PROGRESS", action="store_true", help="no live progress display")
    option("--log", env="LOG", type=_typed(parse_log_level), default="WARNING",
           help="log level; INFO logs every message sent or failed")
    option("--max-retries", env="MAX_RETRIES", type=_typed(whole_number(0, 100)), default=0,
           help="attempts after a failed one before a message counts as failed")
    option("--retry-backoff", env="RETRY_BACKOFF", type=_typed(real_number(0.0, MAX_SECONDS)),
           default=1.0, help="simulated seconds before the first retry; doubles each time, jittered")
    option("--broker", env="BROKER", type=_typed(parse_broker_url), metavar="URL",
           help="run the senders through Redis Streams at URL (needs pip install 'smsbatch[redis]'); "
                "`smsbatch worker --broker URL` adds senders from other machines")
    option("--no-local-senders", env="NO_LOCAL_SENDERS", action="store_true",
           help="with --broker: run no senders here, only workers")
    option("--broker-timeout", **BROKER_TIMEOUT)
    option("--claim-after", env="CLAIM_AFTER", type=_typed(real_number(1.0, MAX_SECONDS)),
           default=10.0, help="with --broker: real seconds a sender may stay silent before "
                              "its work is handed to the others (live senders speak every second)")
    return parser


@dataclass(frozen=True)
class WorkerSettings:
    broker: str
    senders: tuple[SenderSpec, ...]
    run_id: str | None = None  # None: whichever run is in progress, or the next
    once: bool = False
    broker_timeout: float = 30.0


def build_worker_parser() -> configargparse.ArgParser:
    parser = _Parser(
        prog="smsbatch worker",
        description="Add senders on this machine to a smsbatch run through Redis Streams.",
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )

    def option(*flags, env: str, **kwargs):
        parser.add_argument(*flags, env_var=f"SMSBATCH_{env}", **kwargs)

    option("-c", "--config", env="WORKER_CONFIG", is_config_file=True, help="ini file with any of these options")
    option("--broker", env="BROKER", type=_typed(parse_broker_url), metavar="URL", required=True,
           help="the Redis URL the run was started with")
    option("--sender", env="SENDER", action="append", type=_typed(parse_sender), metavar="SPEC",
           help="MEAN:FAIL_RATE[:key=value...], repeatable "
                f"[default set: {' '.join(DEFAULT_SENDERS)}]")
    option("--run", env="RUN", metavar="ID", help="join this run only [the one in progress, or the next]")
    option("--once", env="ONCE", action="store_true", help="leave after one run [serve run after run]")
    option("--broker-timeout", **BROKER_TIMEOUT)
    return parser


def parse_worker_settings(argv: list[str] | None) -> WorkerSettings:
    try:
        ns = build_worker_parser().parse_args(argv)
    except UnicodeDecodeError:
        raise UsageError("argument -c/--config: the config file is not a text ini file") from None
    return WorkerSettings(broker=ns.broker, senders=_sender_specs(ns), run_id=ns.run,
                          once=ns.once, broker_timeout=ns.broker_timeout)


def parse_log_level(text: str) -> str:
    level = str(text).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def parse_settings(argv: list[str] | None, parser: configargparse.ArgParser | None = None) -> Settings:
    """Parse and check everything; UsageError on the first bad value."""
    parser = parser or build_parser()
    try:
        namespace = parser.parse_args(argv)
    except UnicodeDecodeError:
        raise UsageError("argument -c/--config: the config file is not a text ini file") from None
    return settings_from(namespace)


def settings_from(ns) -> Settings:
    if ns.no_local_senders and not ns.broker:
        raise UsageError("argument --no-local-senders: only with --broker (senders must run somewhere)")
    if ns.no_local_senders and ns.sender:
        raise UsageError("argument --no-local-senders: not with --sender (those would run here)")
    if ns.broker and math.isinf(ns.speed):
        raise UsageError("argument --speed: max (virtual time) runs on this machine only, not with --broker")
    if ns.broker and ns.replications > 1:
        raise UsageError("argument --replications: more than 1 only without --broker")
    senders = () if ns.no_local_senders else _sender_specs(ns)
    _check_spreads(ns, senders)
    seed_given = ns.seed is not None
    return Settings(
        messages=ns.messages if ns.messages is not None else 1000,
        messages_given=ns.messages is not None,
        senders=senders,
        text=ns.text,
        region=ns.region,
        recipients=ns.recipients,
        distribution=ns.distribution,
        spread=ns.spread,
        interval=ns.interval,
        speed=ns.speed,
        seed=ns.seed if seed_given else secrets.randbelow(2**32),
        seed_given=seed_given,
        summary_json=ns.summary_json,
        progress=not ns.no_progress,
        log_level=ns.log,
        max_retries=ns.max_retries,
        retry_backoff=ns.retry_backoff,
        broker=ns.broker,
        broker_timeout=ns.broker_timeout,
        claim_after=ns.claim_after,
        local_senders=not ns.no_local_senders,
        replications=ns.replications,
        jobs=ns.jobs or os.cpu_count() or 1,
    )


def _sender_specs(ns) -> tuple[SenderSpec, ...]:
    senders = tuple(ns.sender) if ns.sender else tuple(parse_sender(s) for s in DEFAULT_SENDERS)
    if len(senders) > MAX_SENDERS:
        raise UsageError(f"argument --sender: at most {MAX_SENDERS} senders")
    return tuple(spec if spec.name else _named(spec, index) for index, spec in enumerate(senders, 1))


def _named(spec: SenderSpec, index: int) -> SenderSpec:
    from dataclasses import replace

    return replace(spec, name=f"sender {index}")


def _check_spreads(ns, senders) -> None:
    checks = [("--spread", ns.distribution, ns.spread)]
    checks += [
        (f"--sender {spec.name}", spec.distribution or ns.distribution,
         ns.spread if spec.spread is None else spec.spread)
        for spec in senders
    ]
    for option, distribution, spread in checks:
        limit = MAX_SPREAD[distribution]
        if spread > limit:
            raise UsageError(
                f"argument {option}: spread must be at most {limit:.3g} "
                f"for the {distribution} distribution (got {spread:g})"
            )
