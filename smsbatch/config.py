"""Configuration: one parser for ini file, command line and environment, into
a frozen Settings (core/settings.py) validated once, here at the edge.

Every option has an env var SMSBATCH_<OPTION>; the command line beats the
environment, which beats the config file. Any bad value raises UsageError with
one line naming the option and the rule.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import itertools
import json
import math
import os
import re
import secrets
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import configargparse
import phonenumbers

from smsbatch import __version__
from smsbatch.core.distributions import DEFAULT_DISTRIBUTION, DEFAULT_SPREAD, DISTRIBUTIONS, MAX_SPREAD
from smsbatch.core.errors import UsageError
from smsbatch.core.inference import MIN_AUTO
from smsbatch.core.settings import DEFAULT_TEXT, AccountSpec, SenderSpec, Settings, WorkerSettings, sender_keys
from smsbatch.core.text import redact_url, shorten, sms_segments, visible

MAX_MESSAGES = 1_000_000_000
MAX_SENDERS = 1024
# The slowest speed-up: one simulated second in 1,000 real ones. Slower, a run
# barely moves (at 1e-300 a 0.05 s send would take 1e298 s).
MIN_SPEED = 1e-3
MAX_SPEED = 1e6
# A config file is a few lines of key = value: a bigger one (/dev/zero, a log
# given by mistake) is refused before it is read whole.
MAX_CONFIG_BYTES = 1_000_000
MAX_WINDOW = 100_000
MAX_SECONDS = 86_400.0
# Below this a positive time or rate is a typo, and 1/x overflows a float
# (a mean of 1e-320 s is 1e320 sends a second).
MIN_POSITIVE = 1e-6
MAX_NAME = 40  # characters in a sender name: it heads a column of the summary
MIN_INTERVAL = 0.05  # real seconds between progress lines: faster floods the terminal
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Chosen so that a plain `smsbatch` (1000 messages) ends in about 25 s.
DEFAULT_RETRY_BACKOFF = 1.0
DEFAULT_SENDERS = ("0.05:0.01", "0.08:0.03", "0.15:0.05", "0.4:0.2")


# ---- value rules: each raises ValueError with the rule, in words ----


def whole_number(low: int, high: int) -> Callable[[str], int]:
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


def real_number(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
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


def zero_or_at_least(low: float, high: float, unit: str) -> Callable[[str], float]:
    """0, or a number from `low` to `high`: nothing between 0 and `low`."""

    def parse(text: str) -> float:
        rule = f"must be 0 or a number from {low:g} to {high:g} {unit}"
        try:
            value = float(str(text).strip())
        except ValueError:
            raise ValueError(rule) from None
        if value != 0 and not low <= value <= high:  # NaN fails this too
            raise ValueError(rule)
        return value

    return parse


parse_mean = zero_or_at_least(MIN_POSITIVE, MAX_SECONDS, "(seconds)")
parse_fail_rate = real_number(0.0, 1.0)
parse_window = whole_number(1, MAX_WINDOW)
parse_rate = real_number(MIN_POSITIVE, 1e9)
parse_spread = real_number(0.0, 1000.0)


MAX_REPLICATIONS = 10_000


def open_share(text: str) -> float:
    """A share strictly between 0 and 1 (--precision, --probability)."""
    rule = "must be a number above 0 and below 1"
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(rule) from None
    if not 0.0 < value < 1.0:  # NaN fails this too
        raise ValueError(rule)
    return value


MIN_AUTO_REPLICATIONS = MIN_AUTO  # --replications auto runs at least this many


def parse_replications(text: str) -> int:
    """A whole number of replications, or `auto` (0): until the headline figure is precise."""
    if str(text).strip().lower() == "auto":
        return 0
    try:
        return whole_number(1, MAX_REPLICATIONS)(text)
    except ValueError:
        raise ValueError(f"must be a whole number from 1 to {MAX_REPLICATIONS:,}, or auto") from None


def parse_run_id(text: str) -> str:
    """A run's id, as its coordinator's first line says it (`smsbatch: run 1a2b3c4d on ...`)."""
    text = str(text).strip()
    if not re.fullmatch(r"[0-9a-f]{8}", text):
        raise ValueError("must be a run's id: 8 hex digits, as the coordinator's line 'smsbatch: run ID on ...' says")
    return text


def parse_cluster(text: str) -> str:
    """A Dask scheduler's address, checked here without importing Dask."""
    from urllib.parse import urlsplit

    text = str(text).strip()
    rule = "must be a Dask scheduler address such as tcp://scheduler:8786"
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        raise ValueError(rule) from None
    if url.scheme not in ("tcp", "tls") or not url.hostname or port is None or url.path not in ("", "/"):
        raise ValueError(rule)
    return text


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
        return real_number(MIN_SPEED, MAX_SPEED)(text)
    except ValueError:
        raise ValueError(f"must be a number from {MIN_SPEED:g} to {MAX_SPEED:g}, or max") from None


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Simulated seconds: `90`, `90s`, `10m`, `1.5h`; positive, at most a year."""
    rule = "must be a positive duration: seconds, or a number with s, m or h (90s, 10m, 1h)"
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smhSMH]?)\s*", str(text))
    if not match:
        raise ValueError(rule)
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if not value > 0.0:
        raise ValueError(rule)
    if value > 366 * 86_400.0:
        raise ValueError("must be at most a year (8784h)")
    return value


def parse_distribution(text: str) -> str:
    name = str(text).strip().lower()  # a name: LOGNORMAL is lognormal, as US is us
    if name not in DISTRIBUTIONS:
        raise ValueError(f"must be one of {', '.join(DISTRIBUTIONS)}")
    return name


def parse_outage(text: str) -> tuple[float, float]:
    """START+DURATION, each seconds or with s, m or h: `3m+2m` is down from 180 s to 300 s."""
    start, plus, duration = str(text).partition("+")
    rule = "must be START+DURATION, e.g. 3m+2m (down from minute 3 for 2 minutes)"
    if not plus:
        raise ValueError(rule)
    try:
        begins = 0.0 if start.strip() in ("0", "0s", "0m", "0h") else parse_duration(start)
        return (begins, parse_duration(duration))
    except ValueError:
        raise ValueError(rule) from None


def parse_sender_name(text: str) -> str:
    """A name heads a summary column and a progress line: one printable line."""
    if not text:
        raise ValueError("must not be empty")
    if not text.isprintable():
        raise ValueError("must be printable characters, without newlines, tabs or escapes")
    if len(text) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters")
    return text


# How each key=value field of a --sender spec is checked; the keys are
# core/settings.py's (a KeyError here at import: a new field with no rule).
_RULES: dict[str, Callable[[str], Any]] = {
    "name": parse_sender_name,
    "window": parse_window,
    "rate": parse_rate,
    "distribution": parse_distribution,
    "spread": parse_spread,
    "account": parse_sender_name,
    "dlr_median": real_number(0.0, MAX_SECONDS),
    "dlr_p90": real_number(0.0, MAX_SECONDS),
    "cap": parse_rate,
    "burst": real_number(1.0, 1e9),
    "down": lambda text: (parse_outage(text),),
    "mtbf": parse_duration,
    "mttr": parse_duration,
    "backup": lambda text: True,
}
FLAGS = ("backup",)  # fields written bare, with no value
REPEATABLE = ("down",)  # fields that may be given more than once: each adds one
SENDER_RULES = {key: _RULES[key] for key in sender_keys()}


def parse_sender(text: str) -> SenderSpec:
    """MEAN:FAIL_RATE[:key=value...], e.g. `0.5:0.25` or `1:0.05:window=1000:rate=500`."""
    parts = [part.strip() for part in str(text).split(":")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("must be MEAN:FAIL_RATE[:key=value...], e.g. 0.5:0.25")
    try:
        mean = parse_mean(parts[0])
    except ValueError as error:
        raise ValueError(f"MEAN {error}") from None
    try:
        fail_rate = parse_fail_rate(parts[1])
    except ValueError as error:
        raise ValueError(f"FAIL_RATE {error}") from None
    spec = SenderSpec(mean, fail_rate)
    given: set[str] = set()
    for part in parts[2:]:
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")  # dlr-median= as the options spell it, or dlr_median=
        if key not in SENDER_RULES or (sep if key in FLAGS else not sep):
            raise ValueError(
                f"extra fields must be key=value with key one of {', '.join(SENDER_RULES)} ({', '.join(FLAGS)} bare)"
            )
        if key in given and key not in REPEATABLE:
            raise ValueError(f"field {key} given twice")
        given.add(key)
        try:
            parsed = SENDER_RULES[key](value.strip())
        except ValueError as error:
            raise ValueError(f"{key} {error}") from None
        spec = replace(spec, **{key: getattr(spec, key) + parsed if key in REPEATABLE else parsed})
    return _checked_gateway(spec)


def _checked_gateway(spec: SenderSpec) -> SenderSpec:
    """The rules between a sender's gateway fields."""
    if bool(spec.mtbf) != bool(spec.mttr):
        raise ValueError("mtbf and mttr go together (random outages: up and down times, exponential)")
    if spec.burst and not spec.cap:
        raise ValueError("burst needs cap (the gateway's limit it is the bucket of)")
    outages = sorted(spec.down)
    for (start, duration), (next_start, _) in itertools.pairwise(outages):
        if next_start < start + duration:
            raise ValueError(f"down={_seconds(next_start)}+... overlaps down={_seconds(start)}+{_seconds(duration)}")
    return replace(spec, down=tuple(outages))


def _seconds(value: float) -> str:
    return f"{value:g}s"


def parse_account(text: str) -> AccountSpec:
    """NAME:rate=R, e.g. `a:rate=30`: a cap of R segments a second shared by the account's senders."""
    name, sep, field = str(text).strip().partition(":")
    key, equals, value = field.partition("=")
    if not sep or not equals or key.strip() != "rate":
        raise ValueError("must be NAME:rate=R, e.g. a:rate=30")
    try:
        name = parse_sender_name(name.strip())
    except ValueError as error:
        raise ValueError(f"NAME {error}") from None
    try:
        return AccountSpec(name, parse_rate(value))
    except ValueError as error:
        raise ValueError(f"rate {error}") from None


# Codes people write for a region that ISO 3166 (and phonenumbers) spell otherwise.
REGION_ALIASES = {"UK": "GB", "EL": "GR", "EN": "GB", "SCO": "GB", "UAE": "AE", "USA": "US"}


def parse_region(text: str) -> str:
    region = str(text).strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        hint = f"; did you mean {REGION_ALIASES[region]}?" if region in REGION_ALIASES else ""
        raise ValueError(f"must be a two-letter ISO 3166 region code such as US, GB or DE{hint}")
    return region


def parse_text(text: str) -> str:
    if not str(text).strip():
        raise ValueError("must not be empty")
    if len(text) > 1600:
        raise ValueError("must be at most 1600 characters")
    if re.search("[\ud800-\udfff]", text):  # bytes that were not UTF-8, kept by surrogateescape
        raise ValueError("must be UTF-8 text")
    return str(text)


ECHO_WIDTH = 60  # characters of a bad value an error line shows


def _typed(rule: Callable[[str], object], shown: Callable[[str], str] = str) -> Callable[[str], object]:
    """Wrap a rule for argparse, which shows ArgumentTypeError messages as they are.
    `shown` is how the bad value is echoed (a URL without its password)."""

    def parse(text: str) -> object:
        try:
            return rule(text)
        except ValueError as error:
            echoed = repr(shown(text))
            if len(echoed) > ECHO_WIDTH:  # one line, whatever was given (a 1,600-character text)
                echoed = echoed[: ECHO_WIDTH - 4] + "...'"
            raise configargparse.ArgumentTypeError(f"{error} (got {echoed})") from None

    parse.__name__ = getattr(rule, "__name__", "value")
    return parse


class _Parser(configargparse.ArgParser):
    """Reads -c files with IniFile, for the command's own `section`."""

    def __init__(self, *, section: str, **kwargs) -> None:
        ini = IniFile(section, kwargs["prog"])
        super().__init__(config_file_parser_class=ini, formatter_class=_HelpFormatter, **kwargs)
        ini.parser = self
        self.add_argument("--version", action="version", version=f"smsbatch {__version__}")

    def error(self, message: str):  # one line, no usage block, no SystemExit
        if message.startswith("Unable to open config file"):
            message = "argument -c/--config: " + message.split(". Error: ")[0].lower()
        flag = re.match(r"Unexpected value for (SMSBATCH_\w+): '(.*)'\. Expecting", message)
        if flag:  # configargparse's own words for a flag's variable: the option's, as for any other
            option = next((_flags(a) for a in self._actions if getattr(a, "env_var", None) == flag[1]), flag[1])
            message = (
                f"argument {option}: must be true or false (1, 0, yes, no, on, off) in the environment "
                f"variable {flag[1]} (got '{flag[2]}')"
            )
        raise UsageError(message)

    def parse_args(self, args=None, namespace=None, **kwargs):
        self._check_environment()
        return super().parse_args(args, namespace, **kwargs)

    def _check_environment(self) -> None:
        """A variable SMSBATCH_X that names no option of any command is a mistake
        (SMSBATCH_MESSAGE=10 ran 1000 messages): bad input, as an unknown key in a
        config file is. SMSBATCH_TEST_* are the test suite's own."""
        known = set(_known_env()) | {a.env_var for a in self._actions if getattr(a, "env_var", None)}
        for name in sorted(os.environ):
            if name.startswith("SMSBATCH_") and not name.startswith("SMSBATCH_TEST_") and name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise UsageError(f"environment variable {name}: no option reads it{hint}")

    def convert_item_to_command_line_arg(self, action, key, value):
        # SMSBATCH_SENDER=[] would add no --sender at all, so the built-in
        # senders would run: the opposite of what an empty list says.
        if value == [] and action is not None:
            self.error(
                f"argument {_flags(action)}: must not be an empty list; leave {key} unset for the default (got '[]')"
            )
        if action is not None and action.type and key == getattr(action, "env_var", None):
            self._check_env(action, key, value)  # a config file's values are checked as it is read
        return super().convert_item_to_command_line_arg(action, key, value)

    def _check_env(self, action, key: str, value) -> None:
        """An environment variable's value, checked with its option's rule, so
        that the error names the variable and not only the option."""
        for each in value if isinstance(value, list) else [value]:
            try:
                action.type(each)
            except configargparse.ArgumentTypeError as error:
                hint = _list_hint(action, value, f"{key}=")
                self.error(f"argument {_flags(action)}: {error} in the environment variable {key}{hint}")


class _HelpFormatter(configargparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: ...)` only where there is a default to show: not `None`,
    and not `False` for a flag. Options without one say it in their help."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _flags(action) -> str:
    return "/".join(action.option_strings)


TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
_KEY_VALUE = re.compile(r"(?P<key>(?:--)?\w[\w.-]*)\s*(?:[=:]\s*(?P<value>.*))?")
_INLINE_COMMENT = re.compile(r"\s[#;]\s.*$")  # `value  # note`, as configargparse reads it


class IniFile(configargparse.ConfigFileParser):
    """`-c FILE`: `key = value` lines, before any `[section]` or in the
    command's own (`[smsbatch]`, `[smsbatch worker]`), `#` and `;` comments,
    lists as `[a, b]`. Each value is checked here with its option's rule, so
    that every error names the file and the line."""

    def __init__(self, section: str, prog: str) -> None:
        self.section = section
        self.prog = prog
        self.parser: configargparse.ArgParser | None = None  # set by _Parser

    def get_syntax_description(self) -> str:
        return f"key = value lines, before any section or in [{self.section}]"

    def parse(self, stream) -> OrderedDict:
        name = getattr(stream, "name", "the config file")
        try:
            text = stream.read(MAX_CONFIG_BYTES + 1)  # no more: /dev/zero never ends
        except UnicodeDecodeError:
            raise _config_error(f"argument -c/--config: {name} is not a text ini file") from None
        if "\0" in text:
            raise _config_error(f"argument -c/--config: {name} is not a text ini file (it holds a NUL byte)")
        if len(text.encode()) > MAX_CONFIG_BYTES:
            raise _config_error(f"argument -c/--config: must be at most {MAX_CONFIG_BYTES:,} bytes; {name} is larger")
        lines = text.splitlines()
        items: OrderedDict = OrderedDict()
        section = None
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            where = f"{name} line {number}"
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = " ".join(line[1:-1].split())
                continue
            match = _KEY_VALUE.fullmatch(line)
            if not match:
                raise _config_error(
                    f"argument -c/--config: must be an ini file of key = value lines; "
                    f"{where} is not (got {_quoted(line)})"
                )
            if section is not None and section.lower() != self.section:
                raise _config_error(
                    f"argument -c/--config: {self.prog} reads [{self.section}] or no "
                    f"section (got [{_shown(section)}] in {where})"
                )
            key = match["key"].removeprefix("--")
            if key in items:
                raise _config_error(f"argument -c/--config: each key once (got {key!r} again in {where})")
            items[key] = self._checked(self._action(key, where), match["value"], where)
        return items

    def _action(self, key: str, where: str) -> argparse.Action:
        assert self.parser is not None, "set by _Parser"
        options = {
            flag[2:]: action
            for action in self.parser._actions
            for flag in action.option_strings
            if flag.startswith("--") and action.dest not in ("config", "help", "version")
        }
        if key in options:
            return options[key]
        near = key.replace("_", "-").lower()
        rule = (
            f"{key} is written {near}"
            if near in options
            else "keys must be option names such as messages or max-retries"
        )
        raise _config_error(f"argument -c/--config: {rule} (got {_quoted(key)} in {where})")

    def _checked(self, action, raw: str | None, where: str):
        """The value as configargparse wants it ("true"/"false" for a flag, a list
        for a repeatable option), once the option's own rule accepts it."""
        flags = _flags(action)
        if raw is None and action.nargs != 0:  # a bare key is only for a flag (`no-progress`)
            raise _config_error(
                f"argument {flags}: needs key = value in a config file (got "
                f"{_quoted(flags.split('--')[-1])} alone in {where})"
            )
        value = _unquoted(_INLINE_COMMENT.sub("", raw)) if raw is not None else "true"
        if action.nargs == 0:  # a flag: --no-progress
            if value.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise _config_error(f"argument {flags}: must be true or false (got {_quoted(value)} in {where})")
            return value.lower()
        repeatable = isinstance(action, argparse._AppendAction)
        values = _listed(value) if repeatable else [value]
        if action.dest == "sender" and len(values) > MAX_SENDERS:  # before each is parsed
            raise _config_error(f"argument --sender: at most {MAX_SENDERS} senders (got {len(values):,} in {where})")
        if not values:
            raise _config_error(
                f"argument {flags}: must not be an empty list; leave the key out for the default (got '[]' in {where})"
            )
        for each in values:
            try:
                action.type and action.type(each)
            except configargparse.ArgumentTypeError as error:
                hint = _list_hint(action, value, f"{flags.split('--')[-1]} = ")
                raise _config_error(f"argument {flags}: {error} in {where}{hint}") from None
        return values if repeatable else value


def _list_hint(action, value, written: str) -> str:
    """For a repeatable option given `a, b` without brackets: how a list is written."""
    if not isinstance(action, argparse._AppendAction) or not isinstance(value, str):
        return ""
    if "," not in value or value.strip().startswith("["):
        return ""
    return f"; a list is written in brackets: {written}[{_shown(value.strip())}]"


def _listed(value: str) -> list[str]:
    """`[a, b]` as a list (JSON strings allowed); anything else is one value."""
    if not (value.startswith("[") and value.endswith("]")):
        return [value]
    try:
        return [str(each) for each in json.loads(value)]
    except ValueError:
        inside = value[1:-1].strip()
        return [each.strip() for each in inside.split(",")] if inside else []


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _shown(text: str) -> str:
    return shorten(visible(text), 60)


def _quoted(text: str) -> str:
    return repr(_shown(text))


def _config_error(message: str) -> configargparse.ConfigFileParserException:
    return configargparse.ConfigFileParserException(message)


class _AddOption(Protocol):
    """Adds one option, with its environment variable SMSBATCH_<env>."""

    def __call__(self, *flags: str, env: str, **kwargs: object) -> None: ...


def _option_adder(parser: configargparse.ArgParser) -> _AddOption:
    def option(*flags: str, env: str, **kwargs: object) -> None:
        parser.add_argument(*flags, env_var=f"SMSBATCH_{env}", **kwargs)

    return option


HELP_EPILOG = (
    "More commands, each with its own --help: `smsbatch report SUMMARY.json -o REPORT.html` "
    "makes the HTML report of a summary file (--summary-json); `smsbatch worker --broker URL` "
    "adds senders on another machine to a run through Redis; `smsbatch plan -c CONFIG --vary "
    "KNOB=LO..HI` finds the smallest value that meets the deadline; `smsbatch compare A.ini B.ini` "
    "gives the paired difference of two configs. Every option is explained in "
    "docs/options.md (the README links the rest of the docs)."
)


def build_parser(
    default_config_files: Sequence[str] = (),
    prog: str = "smsbatch",
    description: str = "Simulate an SMS alert blast through a set of senders and watch it go.",
) -> configargparse.ArgParser:
    parser = _Parser(
        prog=prog,
        section="smsbatch",  # plan and compare read the same config files as a run
        description=description,
        epilog=HELP_EPILOG,
        default_config_files=list(default_config_files),
    )
    option = _option_adder(parser)
    option("-c", "--config", env="CONFIG", is_config_file=True, help="ini file with any of these options")
    _message_options(option)
    _sender_options(option)
    _run_options(option)
    _output_options(option)
    _deadline_options(option)
    _display_options(option)
    _retry_options(option)
    _receipt_options(option)
    _gateway_options(option)
    _broker_options(option)
    return parser


def _message_options(option: _AddOption) -> None:
    """The message and who it goes to."""
    option(
        "-n",
        "--messages",
        env="MESSAGES",
        type=_typed(whole_number(1, MAX_MESSAGES)),
        default=None,
        help="messages to send (default: 1000; with --recipients, one per valid number)",
    )
    option("--text", env="TEXT", type=_typed(parse_text), default=DEFAULT_TEXT, help="the alert text")
    option(
        "--region",
        env="REGION",
        type=_typed(parse_region),
        default="US",
        help="region of the random mobile numbers, and of local numbers in --recipients",
    )
    option(
        "--recipients",
        env="RECIPIENTS",
        metavar="FILE",
        help="send to the numbers in FILE (one per line, or first CSV column) instead",
    )


def _sender_options(option: _AddOption) -> None:
    """The senders and their send times."""
    option(
        "--sender",
        env="SENDER",
        action="append",
        type=_typed(parse_sender),
        metavar="SPEC",
        help=f"MEAN:FAIL_RATE[:key=value...], repeatable; keys: {', '.join(sender_keys())} "
        f"(default: the built-in set {' '.join(DEFAULT_SENDERS)})",
    )
    option(
        "--account",
        env="ACCOUNT",
        action="append",
        type=_typed(parse_account),
        metavar="NAME:rate=R",
        help="a cap of R segments a second shared by the senders with account=NAME, repeatable",
    )
    option(
        "--distribution",
        env="DISTRIBUTION",
        type=_typed(parse_distribution),
        default=DEFAULT_DISTRIBUTION,
        help=f"send-time distribution: {', '.join(DISTRIBUTIONS)}",
    )
    option(
        "--spread",
        env="SPREAD",
        type=_typed(parse_spread),
        default=DEFAULT_SPREAD,
        help="send-time standard deviation / mean (normal, lognormal, uniform)",
    )


def _run_options(option: _AddOption) -> None:
    """How the run goes: its pace, the display refresh, the replications, the seed."""
    option(
        "--interval",
        env="INTERVAL",
        type=_typed(real_number(MIN_INTERVAL, 3600.0)),
        default=1.0,
        help="seconds between progress refreshes",
    )
    option(
        "--speed",
        env="SPEED",
        type=_typed(parse_speed),
        default=1.0,
        help="speed-up factor: simulated waits take 1/SPEED of real time; max: the model in virtual time, no waiting",
    )
    option(
        "--replications",
        env="REPLICATIONS",
        type=_typed(parse_replications),
        default=1,
        help="independent runs with seeds derived from --seed; the summary gives mean and 95%% interval; "
        "auto: until the 95%% interval of the delivered 90%% time is within --precision",
    )
    option(
        "--precision",
        env="PRECISION",
        type=_typed(open_share),
        default=0.01,
        help="--replications auto: the 95%% interval's half-width, as a share of the mean, to stop at (below 1)",
    )
    option(
        "--max-replications",
        env="MAX_REPLICATIONS",
        type=_typed(whole_number(MIN_AUTO_REPLICATIONS, MAX_REPLICATIONS)),
        default=1000,
        help="--replications auto (and each candidate of a plan): at most this many replications",
    )
    option(
        "--cluster",
        env="CLUSTER",
        type=_typed(parse_cluster),
        metavar="tcp://HOST:8786",
        help="run the replications (and plan, compare) on this Dask scheduler's workers, in virtual time "
        "(needs pip install 'smsbatch[dask]'; waits up to --broker-timeout for it)",
    )
    option(
        "--jobs",
        env="JOBS",
        type=_typed(whole_number(1, 256)),
        default=None,
        help="processes running replications side by side [the number of cores]",
    )
    option(
        "--seed",
        env="SEED",
        type=_typed(whole_number(0, 2**63 - 1)),
        default=None,
        help="seed for a reproducible run (default: a fresh one, printed)",
    )


def _output_options(option: _AddOption) -> None:
    """What is written, and where."""
    option("--summary-json", env="SUMMARY_JSON", metavar="PATH", help="write the summary here")
    option(
        "--report",
        env="REPORT",
        metavar="PATH.html",
        help="write a self-contained HTML report with charts here (opens offline)",
    )
    option("--timeline", env="TIMELINE", metavar="PATH.csv", help="write the run's timeline here as CSV")
    option(
        "--trace",
        env="TRACE",
        metavar="PATH.csv",
        help="write one row per attempt here as CSV (sender, slot, attempt, start, end, outcome); one local run",
    )


def _deadline_options(option: _AddOption) -> None:
    """The planner's target."""
    option(
        "--deadline",
        env="DEADLINE",
        type=_typed(parse_duration),
        default=600.0,
        help="simulated time by which --deadline-share of the messages should be sent: seconds, or 90s, 10m, 1h [10m]",
    )
    option(
        "--deadline-share",
        env="DEADLINE_SHARE",
        type=_typed(real_number(0.0, 1.0, low_open=True)),
        default=0.9,
        help="share of all messages that must be sent by --deadline",
    )
    option(
        "--require-deadline",
        env="REQUIRE_DEADLINE",
        action="store_true",
        help="exit with status 3 when the deadline is missed (for CI)",
    )


def _display_options(option: _AddOption) -> None:
    """What is shown and logged while it runs."""
    option("--no-progress", env="NO_PROGRESS", action="store_true", help="no live progress display")
    option(
        "--log",
        env="LOG",
        type=_typed(parse_log_level),
        default="WARNING",
        help="log level; INFO logs every message sent or failed",
    )


def _retry_options(option: _AddOption) -> None:
    """Failed attempts going round again."""
    option(
        "--max-retries",
        env="MAX_RETRIES",
        type=_typed(whole_number(0, 100)),
        default=0,
        help="attempts after a failed one before a message counts as failed",
    )
    option(
        "--retry-backoff",
        env="RETRY_BACKOFF",
        type=_typed(real_number(0.0, MAX_SECONDS)),
        default=None,  # None: not given, DEFAULT_RETRY_BACKOFF (given alone, it earns a note)
        help=f"simulated seconds before the first retry; doubles each time, jittered; "
        f"only with --max-retries (default: {DEFAULT_RETRY_BACKOFF})",
    )


def _receipt_options(option: _AddOption) -> None:
    """Delivery receipts: when, and whether, an accepted message reaches the handset."""
    option(
        "--dlr-median",
        env="DLR_MEDIAN",
        type=_typed(real_number(0.0, MAX_SECONDS)),
        default=0.0,
        metavar="S",
        help="simulated seconds from acceptance to its delivery receipt, median (lognormal; default 0: at once)",
    )
    option(
        "--dlr-p90",
        env="DLR_P90",
        type=_typed(real_number(0.0, MAX_SECONDS)),
        default=0.0,
        metavar="S",
        help="the receipt delay's 90th percentile, at least --dlr-median (default: the median, a constant delay)",
    )
    option(
        "--undeliverable",
        env="UNDELIVERABLE",
        type=_typed(real_number(0.0, 1.0)),
        default=0.0,
        metavar="P",
        help="the share of accepted messages whose receipt says undeliverable (never retried)",
    )
    option(
        "--receipt-loss",
        env="RECEIPT_LOSS",
        type=_typed(real_number(0.0, 1.0)),
        default=0.0,
        metavar="P",
        help="the share of accepted messages whose receipt never comes",
    )


def _gateway_options(option: _AddOption) -> None:
    """What a real gateway does beyond the senders' own fields (cap=, down=, backup, ...)."""
    option(
        "--throttle-pause",
        env="THROTTLE_PAUSE",
        type=_typed(real_number(0.0, MAX_SECONDS)),
        default=1.0,
        metavar="S",
        help="simulated seconds a sender takes no new work after a throttled answer "
        "(a sender's cap=; default 1, as Kannel)",
    )
    option(
        "--validity",
        env="VALIDITY",
        type=_typed(parse_duration),
        default=None,
        metavar="D",
        help="a message not accepted by D (seconds, or 30s, 10m, 4h) expires, and so does a receipt due after it "
        "(default: none)",
    )


def _broker_options(option: _AddOption) -> None:
    """Redis Streams, and senders on other machines."""
    option(
        "--broker",
        env="BROKER",
        type=_typed(parse_broker_url, redact_url),
        metavar="URL",
        help="run the senders through Redis Streams at URL (needs pip install 'smsbatch[redis]'); "
        "`smsbatch worker --broker URL` adds senders from other machines",
    )
    option(
        "--no-local-senders",
        env="NO_LOCAL_SENDERS",
        action="store_true",
        help="with --broker: run no senders here, only workers",
    )
    _broker_timeout_option(option)
    option(
        "--claim-after",
        env="CLAIM_AFTER",
        type=_typed(real_number(1.0, MAX_SECONDS)),
        default=10.0,
        help="real seconds a sender the run waits on may stay silent before it "
        "counts as lost and its work goes to the others (live senders speak "
        "twice a second)",
    )


def _broker_timeout_option(option: _AddOption) -> None:
    """The same in the run's parser and the worker's."""
    option(
        "--broker-timeout",
        env="BROKER_TIMEOUT",
        type=_typed(real_number(0.0, MAX_SECONDS)),
        default=30.0,
        help="with --broker: seconds to keep retrying an unreachable broker before giving up",
    )


@functools.cache
def _known_env() -> frozenset[str]:
    """Every environment variable an option of any command reads."""
    parsers = (build_parser(), build_worker_parser(), build_plan_parser(), build_compare_parser())
    return frozenset(a.env_var for p in parsers for a in p._actions if getattr(a, "env_var", None))


def build_worker_parser() -> configargparse.ArgParser:
    parser = _Parser(
        prog="smsbatch worker",
        section="smsbatch worker",
        description="Add senders on this machine to a smsbatch run through Redis Streams.",
    )
    option = _option_adder(parser)

    option("-c", "--config", env="WORKER_CONFIG", is_config_file=True, help="ini file with any of these options")
    option(
        "--broker",
        env="BROKER",
        type=_typed(parse_broker_url, redact_url),
        metavar="URL",
        required=True,
        help="the Redis URL the run was started with",
    )
    option(
        "--sender",
        env="SENDER",
        action="append",
        type=_typed(parse_sender),
        metavar="SPEC",
        help=f"MEAN:FAIL_RATE[:key=value...], repeatable (default: the built-in set {' '.join(DEFAULT_SENDERS)})",
    )
    option(
        "--run",
        env="RUN",
        metavar="ID",
        type=_typed(parse_run_id),
        help="join this run only (default: the one in progress, or the next)",
    )
    option("--once", env="ONCE", action="store_true", help="leave after one run (default: serve run after run)")
    _broker_timeout_option(option)
    return parser


def parse_worker_settings(argv: list[str] | None) -> WorkerSettings:
    parser = build_worker_parser()
    argv = values_joined(parser, sys.argv[2:] if argv is None else argv)
    _check_sender_count(argv)
    try:
        ns = parser.parse_args(argv)
    except UnicodeDecodeError:
        raise UsageError("argument -c/--config: the config file is not a text ini file") from None
    senders = _sender_specs(ns)
    for spec in senders:
        if spec.account:
            raise UsageError(f"argument --sender {spec.name}: account= is for one machine, not for a worker's senders")
        if spec.backup:
            raise UsageError(f"argument --sender {spec.name}: backup is for one machine, not for a worker's senders")
    return WorkerSettings(
        broker=ns.broker, senders=senders, run_id=ns.run, once=ns.once, broker_timeout=ns.broker_timeout
    )


# ---- smsbatch plan and smsbatch compare: a run's options, and their own ----

PLAN_KNOBS = ("NAME.copies", "NAME.window", "NAME.rate", "NAME.cap", "ACCOUNT.rate", "messages")


def parse_vary(text: str) -> tuple[str, str, str]:
    """KNOB=LO..HI, e.g. `B.copies=1..10`: (knob, LO, HI) as written (the knob's own rule reads them)."""
    rule = f"must be KNOB=LO..HI with KNOB one of {', '.join(PLAN_KNOBS)}, e.g. B.copies=1..10"
    knob, equals, span = str(text).strip().partition("=")
    low, dots, high = span.partition("..")
    if not equals or not dots or not knob.strip() or not low.strip() or not high.strip():
        raise ValueError(rule)
    return knob.strip(), low.strip(), high.strip()


def _planning_parser(prog: str, description: str) -> tuple[configargparse.ArgParser, _AddOption]:
    """A run's parser, in virtual time and --replications auto unless told otherwise."""
    parser = build_parser(prog=prog, description=description)
    parser.set_defaults(speed=math.inf, replications=0)
    return parser, _option_adder(parser)


def build_plan_parser() -> configargparse.ArgParser:
    parser, option = _planning_parser(
        "smsbatch plan", "The smallest value of one knob (the largest, for messages) that meets the deadline."
    )
    option(
        "--vary",
        env="VARY",
        type=_typed(parse_vary),
        required=True,
        metavar="KNOB=LO..HI",
        help=f"the knob to search and its range; KNOB: {', '.join(PLAN_KNOBS)}",
    )
    option(
        "--probability",
        env="PROBABILITY",
        type=_typed(open_share),
        default=0.95,
        help="a value is feasible when the Wilson 95%% interval of its share of replications meeting "
        "the deadline is at least this (below 1)",
    )
    return parser


def build_compare_parser() -> configargparse.ArgParser:
    parser, option = _planning_parser(
        "smsbatch compare", "Two configs on the same replication seeds: the paired difference, b - a."
    )
    parser.add_argument("configs", nargs="*", metavar="CONFIG", help="A.ini and B.ini (or A.ini and --with)")
    option(
        "--with",
        env="WITH",
        dest="overrides",
        action="append",
        type=_typed(parse_override),
        metavar="KEY=VALUE",
        help="B is A with this option changed (a config file's key, e.g. max-retries=0), repeatable",
    )
    option(
        "--independent",
        env="INDEPENDENT",
        action="store_true",
        help="give B seeds of its own (no common random numbers): Welch intervals instead of paired-t",
    )
    return parser


def parse_override(text: str) -> tuple[str, str]:
    key, equals, value = str(text).strip().partition("=")
    if not equals or not key.strip():
        raise ValueError("must be KEY=VALUE with KEY an option's name, e.g. max-retries=0")
    return key.strip().removeprefix("--"), value.strip()


def parse_planning(argv: list[str], parser: configargparse.ArgParser) -> tuple[Settings, Any]:
    """The settings of a plan or a compare (virtual time only) and its namespace."""
    argv = values_joined(parser, argv)
    _check_sender_count(argv)
    try:
        ns = parser.parse_args(argv)
    except UnicodeDecodeError:
        raise UsageError("argument -c/--config: the config file is not a text ini file") from None
    given = [w for w in argv if w.split("=", 1)[0] == "--speed"] or os.environ.get("SMSBATCH_SPEED")
    if given and not math.isinf(ns.speed):  # a config file's speed is for its runs: a plan ignores it
        raise UsageError(f"argument --speed: {parser.prog} runs in virtual time only (--speed max)")
    ns.speed = math.inf
    for flag, given in (("--timeline", ns.timeline), ("--trace", ns.trace), ("--broker", ns.broker)):
        if given:
            raise UsageError(f"argument {flag}: not with {parser.prog} (it runs many replications on this machine)")
    return settings_from(ns), ns


def compare_sides(argv: list[str]) -> tuple[Settings, Settings, Any]:
    """`smsbatch compare A.ini B.ini [options]` or `A.ini --with KEY=VALUE...`: each
    side's settings, the other options applying to both; and the namespace."""
    parser = build_compare_parser()
    _, ns = parse_planning(argv, parser)
    configs, overrides = list(ns.configs), list(ns.overrides or ())
    if not configs or len(configs) > 2:
        raise UsageError("give two configs, A.ini B.ini, or one and --with KEY=VALUE")
    if len(configs) == 2 and overrides:
        raise UsageError("argument --with: changes the first config into the second; not with two configs")
    if len(configs) == 1 and not overrides:
        raise UsageError("smsbatch compare: give a second config, or --with KEY=VALUE to change the first")
    rest = _without_compare_words(argv, configs)
    run_parser, _ = _planning_parser("smsbatch compare", "one side of a compare")
    a, _ = parse_planning(["-c", configs[0], *rest], run_parser)
    options = {flag[2:]: action for action in run_parser._actions for flag in action.option_strings}
    extra: list[str] = []
    for key, value in overrides:
        action = options.get(key)
        if action is None or key in ("config", "help", "version"):
            raise UsageError(f"argument --with: {key!r} is not an option of a run (e.g. max-retries=0)")
        if action.nargs == 0:
            if value.lower() not in TRUE_WORDS:
                raise UsageError(f"argument --with: {key} is a flag: {key}=true, or leave it out")
            extra.append(f"--{key}")
        else:
            extra.append(f"--{key}={value}")
    b, _ = parse_planning(["-c", configs[-1], *rest, *extra], run_parser)
    if a.recipients != b.recipients:
        raise UsageError("argument --recipients: compare sends both configs to the same list (or both to random)")
    return a, b, ns


def _without_compare_words(argv: list[str], configs: list[str]) -> list[str]:
    """argv less compare's own words: the configs, --with KEY=VALUE, --independent."""
    rest, left, words = [], list(configs), iter(argv)
    for word in words:
        if word == "--independent":
            continue
        if word == "--with":
            next(words, None)
            continue
        if word.startswith("--with="):
            continue
        if word in left and not word.startswith("-"):
            left.remove(word)
            continue
        rest.append(word)
    return rest


def parse_log_level(text: str) -> str:
    level = str(text).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def values_joined(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """`--deadline -5m` as `--deadline=-5m`: argparse takes a value that starts
    with "-" (and is not a plain negative number) for an option, and says only
    "expected one argument"; joined, the option's own rule says what is wrong."""
    takes_value = {
        name for action in parser._actions if action.nargs is None and action.option_strings
        for name in action.option_strings
    }  # fmt: skip
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word in takes_value:
            value = next(words, None)
            if value is not None and len(value) > 1 and value[0] == "-" and (value[1].isdigit() or value[1] == "."):
                joined.append(f"{word}={value}")
                continue
            joined.append(word)
            if value is not None:
                joined.append(value)
            continue
        joined.append(word)
    return joined


def parse_settings(argv: list[str] | None, parser: configargparse.ArgParser | None = None) -> Settings:
    """Parse and check everything; UsageError on the first bad value."""
    parser = parser or build_parser()
    argv = values_joined(parser, sys.argv[1:] if argv is None else argv)
    _check_sender_count(argv)
    try:
        namespace = parser.parse_args(argv)
    except UnicodeDecodeError:
        raise UsageError("argument -c/--config: the config file is not a text ini file") from None
    return settings_from(namespace)


def _check_sender_count(argv: Sequence[str]) -> None:
    """Too many --sender options are refused before any is parsed: argparse takes
    time quadratic in the options given (10,000 senders took 6 s to refuse)."""
    count = sum(1 for arg in argv if len(arg.split("=", 1)[0]) >= 5 and "--sender".startswith(arg.split("=", 1)[0]))
    if count > MAX_SENDERS:
        raise UsageError(f"argument --sender: at most {MAX_SENDERS} senders (got {count:,})")


def settings_from(ns) -> Settings:
    if ns.no_local_senders and not ns.broker:
        raise UsageError("argument --no-local-senders: only with --broker (senders must run somewhere)")
    if ns.no_local_senders and ns.sender:
        raise UsageError("argument --no-local-senders: not with --sender (those would run here)")
    if ns.broker and math.isinf(ns.speed):
        raise UsageError("argument --speed: max (virtual time) runs on this machine only, not with --broker")
    if ns.broker and ns.replications != 1:
        raise UsageError("argument --replications: more than 1 (or auto) only without --broker")
    if ns.cluster and not math.isinf(ns.speed):
        raise UsageError("argument --cluster: in virtual time only (--speed max); a real-time run's senders run here")
    if ns.cluster and ns.replications == 1:
        raise UsageError("argument --cluster: for --replications (or plan, compare); one run has nothing to share")
    if ns.trace and (ns.broker or ns.replications != 1):
        raise UsageError("argument --trace: one run on this machine only (not with --broker or --replications)")
    senders = () if ns.no_local_senders else _sender_specs(ns)
    _check_spreads(ns, senders)
    accounts = _checked_accounts(ns, senders)
    _check_receipts(ns, senders)
    _check_gateways(ns, senders)
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
        retry_backoff=DEFAULT_RETRY_BACKOFF if ns.retry_backoff is None else ns.retry_backoff,
        retry_backoff_given=ns.retry_backoff is not None,
        broker=ns.broker,
        broker_timeout=ns.broker_timeout,
        claim_after=ns.claim_after,
        local_senders=not ns.no_local_senders,
        replications=ns.replications,
        precision=ns.precision,
        cluster=ns.cluster,
        max_replications=ns.max_replications,
        jobs=ns.jobs or os.cpu_count() or 1,
        deadline=ns.deadline,
        deadline_share=ns.deadline_share,
        require_deadline=ns.require_deadline,
        report=ns.report,
        timeline=ns.timeline,
        trace=ns.trace,
        accounts=accounts,
        dlr_median=ns.dlr_median,
        dlr_p90=ns.dlr_p90,
        undeliverable=ns.undeliverable,
        receipt_loss=ns.receipt_loss,
        throttle_pause=ns.throttle_pause,
        validity=ns.validity,
    )


def _sender_specs(ns) -> tuple[SenderSpec, ...]:
    senders = tuple(ns.sender) if ns.sender else tuple(parse_sender(s) for s in DEFAULT_SENDERS)
    if len(senders) > MAX_SENDERS:
        raise UsageError(f"argument --sender: at most {MAX_SENDERS} senders")
    named = tuple(spec if spec.name else _named(spec, index) for index, spec in enumerate(senders, 1))
    _check_unique_names(named)
    return named


def _check_unique_names(senders) -> None:
    """A name heads a summary row and keys a sender in the summary file: two alike
    would merge in the reader's eyes."""
    seen = set()
    for spec in senders:
        if spec.name in seen:
            raise UsageError(f"argument --sender: names must be unique (got {spec.name!r} twice)")
        seen.add(spec.name)


def _named(spec: SenderSpec, index: int) -> SenderSpec:
    from dataclasses import replace

    return replace(spec, name=f"sender {index}")


def _checked_accounts(ns, senders) -> tuple[AccountSpec, ...]:
    """Every account named once, used by a sender, and every sender's account defined."""
    accounts = tuple(ns.account or ())
    names = [account.name for account in accounts]
    if accounts and ns.broker:
        raise UsageError("argument --account: shared accounts run on one machine only, not with --broker")
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"argument --account: {name!r} is given twice")
        if not any(spec.account == name for spec in senders):
            raise UsageError(f"argument --account: no sender uses {name!r} (give one account={name})")
    for spec in senders:
        if spec.account and spec.account not in names:
            defined = f"; the accounts are {', '.join(names)}" if names else ""
            raise UsageError(
                f"argument --sender {spec.name}: account={spec.account} names no --account NAME:rate=R{defined}"
            )
    return accounts


def _check_receipts(ns, senders) -> None:
    """A p90 needs a median below it; the two shares of accepted messages cannot pass 1."""
    if ns.undeliverable + ns.receipt_loss > 1.0:
        raise UsageError(
            f"argument --receipt-loss: with --undeliverable {ns.undeliverable:g}, the two shares must sum to at most 1"
        )
    checks = [("--dlr-p90", ns.dlr_median, ns.dlr_p90, ns.dlr_p90 > 0)]
    for spec in senders:
        median = ns.dlr_median if spec.dlr_median is None else spec.dlr_median
        p90 = ns.dlr_p90 if spec.dlr_p90 is None else spec.dlr_p90
        checks.append((f"--sender {spec.name}: dlr-p90", median, p90, spec.dlr_p90 is not None))
    for option, median, p90, given in checks:
        if given and p90 < median:
            raise UsageError(f"argument {option}: must be at least the median delay ({median:g}s), got {p90:g}")
        if given and p90 > median and median == 0.0:
            raise UsageError(f"argument {option}: a spread of receipt delays needs a median above 0 (--dlr-median)")


def _check_gateways(ns, senders) -> None:
    """A backup needs a sender that is not one; a gateway's bucket holds a whole message."""
    if senders and all(spec.backup for spec in senders):
        raise UsageError(
            "argument --sender: backup on every sender (a backup takes work only while the others are down)"
        )
    for spec in senders:
        if spec.backup and ns.broker:  # workers join and leave: "every other sender down" is not known here
            raise UsageError(f"argument --sender {spec.name}: backup is for one machine, not with --broker")
    segments = sms_segments(ns.text).count
    for spec in senders:
        if spec.cap and spec.bucket_size < segments:
            raise UsageError(
                f"argument --sender {spec.name}: burst must be at least the text's {segments} segments "
                f"(a message takes them all at once; got {spec.bucket_size:g})"
            )


def _check_spreads(ns, senders) -> None:
    checks = [("--spread", ns.distribution, ns.spread)]
    checks += [
        (
            f"--sender {spec.name}",
            spec.distribution or ns.distribution,
            ns.spread if spec.spread is None else spec.spread,
        )
        for spec in senders
    ]
    for option, distribution, spread in checks:
        limit = MAX_SPREAD[distribution]
        if spread > limit:
            raise UsageError(
                f"argument {option}: spread must be at most {limit:.3g} "
                f"for the {distribution} distribution (got {spread:g})"
            )
