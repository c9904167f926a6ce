"""The command line: parse, check, run, summarise. `main()` returns the exit status."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import TextIO

from smsbatch.config import Settings, UsageError, parse_settings, parse_worker_settings
from smsbatch.monitor import Monitor, make_display, summary_dict, summary_table, write_summary_json
from smsbatch.phones import PhoneError, PhonePool, list_name, read_recipients, recipients_is_stream
from smsbatch.producer import MessageSource
from smsbatch.runner import ExitStatus, Runner, choose_batch_size, stop_signals_caught


def entry() -> None:
    """The `smsbatch` command: main() as the whole process."""
    status = main(restore_signals=False)
    # A late second Ctrl-C must not interrupt the exit: Python resets its own
    # handlers to the default while it shuts down, but leaves SIG_IGN alone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(status)


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None,
         restore_signals: bool = True) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["worker"]:
        return worker_main(argv[1:], stdout, stderr, restore_signals)
    def prepare():
        settings = parse_settings(argv)
        _check_summary_path(settings.summary_json)  # before a long read of --recipients
        source, invalid = make_source(settings, stderr)
        return settings, source, invalid, _runner_class(settings.broker)

    prepared, status = _checked_input("smsbatch", stderr, prepare)
    if prepared is None:
        return status
    settings, source, invalid, runner_class = prepared
    with stop_signals_caught(restore=restore_signals) as signals:
        display = make_display(stderr, settings.progress, source.messages, len(settings.senders))
        _setup_logging(settings.log_level, display)
        monitor = Monitor(display, settings.interval)
        runner = runner_class(settings, source, monitor, signals=signals)
        stdout.write(start_line(settings, source, invalid, getattr(runner, "run_id", None)) + "\n")
        stdout.flush()
        result = runner.run()
        monitor.close(result.snapshot)
        stdout.write(summary_table(result.snapshot, settings.seed, result.stopped_by))
        stdout.flush()
        if settings.summary_json:
            summary = summary_dict(result.snapshot, settings.seed, result.stopped_by,
                                   int(result.exit_status), result.produced, result.startup)
            summary["duplicate_numbers"] = source.duplicate_numbers
            if settings.broker:
                summary.update(broker=settings.broker, run_id=runner.run_id)
            write_summary_json(settings.summary_json, summary)
    return result.exit_status


def _checked_input(prog: str, stderr: TextIO, prepare):
    """(prepare(), None); or, on bad input, --help or Ctrl-C, (None, exit
    status), bad input said in one line."""
    try:
        return prepare(), None
    except UsageError as error:
        stderr.write(f"{prog}: error: {error}\n")
        return None, ExitStatus.USAGE
    except SystemExit as done:  # --help
        return None, int(done.code or 0)
    except KeyboardInterrupt:  # say, waiting for a FIFO's writer: no traceback
        stderr.write(f"{prog}: interrupted before the run started; nothing was sent\n")
        return None, ExitStatus.INTERRUPTED


def _runner_class(broker: str | None):
    """The Runner, or with --broker the Redis one (only then is Redis imported)."""
    if not broker:
        return Runner
    _check_broker(broker)
    from smsbatch.coordinator import StreamRunner

    return StreamRunner


def _check_broker(url: str) -> None:
    try:
        from smsbatch.broker import check_reachable
    except ImportError:
        raise UsageError("argument --broker: needs the Redis client: pip install 'smsbatch[redis]'") from None
    try:
        check_reachable(url)
    except ConnectionError as error:
        raise UsageError(f"argument --broker: no Redis answers at {url} ({error})") from None


def worker_main(argv: list[str], stdout: TextIO, stderr: TextIO, restore_signals: bool) -> int:
    """`smsbatch worker`: senders on this machine for runs started elsewhere."""
    def prepare():
        settings = parse_worker_settings(argv)
        _check_broker(settings.broker)
        return settings

    settings, status = _checked_input("smsbatch worker", stderr, prepare)
    if settings is None:
        return status
    from smsbatch.worker import Worker

    with stop_signals_caught(restore=restore_signals) as signals:
        return Worker(settings, stdout, signals).run()


def make_source(settings: Settings, stderr: TextIO | None = None) -> tuple[MessageSource, int]:
    """The run's messages, and how many recipients lines were invalid."""
    try:
        if settings.recipients:
            return _recipients_source(settings, stderr)
        pool = PhonePool.for_region(settings.region)
    except PhoneError as error:
        option = "--recipients" if settings.recipients else "--region"
        raise UsageError(f"argument {option}: {error}") from None
    if settings.messages > pool.size:  # numbers are dealt without replacement
        raise UsageError(f"argument --messages: region {settings.region} has {pool.size:,} distinct "
                         "random mobile numbers here; ask for at most that many")
    return _source(settings, settings.messages, pool=pool), 0


def _recipients_source(settings: Settings, stderr: TextIO | None) -> tuple[MessageSource, int]:
    """The list is read whole before anything starts (its count sizes the run,
    and a bad list is bad input); a stream may take a while, so say so."""
    if stderr is not None and recipients_is_stream(settings.recipients):
        stderr.write(f"smsbatch: reading numbers from {list_name(settings.recipients)} until it ends...\n")
        stderr.flush()
    limit = settings.messages if settings.messages_given else None
    recipients = read_recipients(settings.recipients, settings.region, limit)
    return _source(settings, recipients.valid, recipients=recipients), recipients.invalid


def _source(settings: Settings, messages: int, **kwargs) -> MessageSource:
    return MessageSource(messages, choose_batch_size(settings, messages), settings.text,
                         settings.seed, **kwargs)


def _check_summary_path(path: str | None) -> None:
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK) or os.path.isdir(path):
        raise UsageError(f"argument --summary-json: cannot write a file at {path}")


def start_line(settings: Settings, source: MessageSource, invalid: int, run_id: str | None = None) -> str:
    where = (f"numbers from {list_name(settings.recipients)}" if settings.recipients
             else f"random {settings.region} mobiles")
    skips = [f"{count} {what}" for count, what in
             ((invalid, "invalid lines"), (source.duplicate_numbers, "duplicate numbers")) if count]
    skipped = f" ({' and '.join(skips)} skipped)" if skips else ""
    seed = f"seed {settings.seed}" + ("" if settings.seed_given else " (pass --seed to repeat)")
    line = (
        f"smsbatch: {source.messages} messages to {where}{skipped} through "
        f"{len(settings.senders)} senders{' here' if settings.broker else ''}, {settings.distribution} send times, "
        f"speed x{settings.speed:g}, {seed}"
    )
    if run_id:
        line += (f"\nsmsbatch: run {run_id} on {settings.broker}; add senders from any machine with: "
                 f"smsbatch worker --broker {settings.broker}")
    return line


class _DisplayHandler(logging.Handler):
    """Log lines go through the display, so they do not tear the progress bars."""

    def __init__(self, display) -> None:
        super().__init__()
        self.display = display

    def emit(self, record: logging.LogRecord) -> None:
        self.display.note(self.format(record))


def _setup_logging(level: str, display) -> None:
    logger = logging.getLogger("smsbatch")
    logger.handlers[:] = [_DisplayHandler(display)]
    logger.handlers[0].setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.setLevel(level)
    logger.propagate = False

