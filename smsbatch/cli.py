"""The command line: parse, check, run, summarise. `main()` returns the exit status."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, TextIO

from smsbatch.assembly import against_model, make_runner, make_source, new_run_id, source_for
from smsbatch.config import (
    UsageError,
    build_plan_parser,
    compare_sides,
    parse_planning,
    parse_settings,
    parse_worker_settings,
)
from smsbatch.core.phones import list_name
from smsbatch.core.settings import Settings
from smsbatch.core.source import MessageSource
from smsbatch.core.summary import SUMMARY_SCHEMA, run_summary, settings_dict, unstarted_summary
from smsbatch.core.text import plural, redact_url, share_text, shorten, sms_segments, visible
from smsbatch.core.timeline import csv_text
from smsbatch.core.trace import trace_csv
from smsbatch.present.monitor import (
    Monitor,
    cut,
    make_display,
    summary_table,
    terminal_size,
    write_summary_json,
)
from smsbatch.present.output import (
    REPORT_SUFFIXES,
    TIMELINE_SUFFIXES,
    check_output_path,
    open_standard_fds,
    standard_streams,
    write_text_file,
)
from smsbatch.realtime.runner import ExitStatus, stop_signals_caught

START_LINE_WIDTH = 100  # columns: the start lines fit a wide terminal without wrapping


def entry(signals: list[int] | None = None) -> None:
    """The `smsbatch` command: main() as the whole process; `signals`: the stop
    signals noted from its first line (smsbatch/__main__.py)."""
    open_standard_fds()
    _escape_unencodable_output()
    status = main(restore_signals=False, signals=signals)
    # A late second Ctrl-C must not interrupt the exit: Python resets its own
    # handlers to the default while it shuts down, but leaves SIG_IGN alone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(status)


def main(
    argv: list[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    restore_signals: bool = True,
    signals: list[int] | None = None,
) -> int:
    out, err = standard_streams(stdout, stderr)  # a closed or cut-short stream goes quiet
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        from smsbatch.present.report import report_main  # only for this command: it reads its assets

        if not restore_signals:  # the whole process: a report is made at once, Ctrl-C ends it as before
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if signals:
                return ExitStatus.INTERRUPTED if signals[0] == signal.SIGINT else ExitStatus.TERMINATED
        return report_main(argv[1:], out, err)
    # Caught before anything is read: a run stopped at any moment ends with its summary.
    with stop_signals_caught(restore=restore_signals, received=signals) as caught:
        if argv[:1] == ["worker"]:
            return worker_main(argv[1:], out, err, caught)
        if argv[:1] in (["plan"], ["compare"]):
            return planning_main(argv[0], argv[1:], out, err, caught)
        return _main(argv, out, err, caught)


@dataclass
class _Prepared:
    """What was made ready before the run: as far as it got, when a signal came first."""

    settings: Settings | None = None
    source: MessageSource | None = None
    invalid: int = 0
    cluster: Any = None  # --cluster: a Dask client, connected before anything starts


def _main(argv: list[str], stdout: TextIO, stderr: TextIO, signals: list[int]) -> int:
    ready = _Prepared()

    def prepare():
        settings = ready.settings = parse_settings(argv)
        _check_output_paths(settings)  # before a long read of --recipients
        with _interruptible(signals):  # a FIFO with no writer, a Redis that does not answer
            ready.source, ready.invalid = make_source(settings, stderr)
            if settings.broker and not settings.virtual:
                _check_broker(settings.broker)
            ready.cluster = _cluster(settings)
        return ready

    _, status = _checked_input("smsbatch", stderr, prepare)
    if status == ExitStatus.INTERRUPTED and not signals:
        signals.append(signal.SIGINT)  # a KeyboardInterrupt of an in-process caller's own
    if status is not None and status != ExitStatus.INTERRUPTED:
        return status
    if signals:  # stopped before anything started: every message unsent, said in the summary
        return _stopped_before_start(ready, argv, signals, stderr)
    settings, source, invalid = ready.settings, ready.source, ready.invalid
    assert settings is not None
    assert source is not None
    _say_notes(settings, stderr)
    if settings.replications != 1:  # a number, or 0: auto
        stdout.write(fit_to_terminal(start_line(settings, source, invalid), stdout) + "\n")
        stdout.flush()
        from smsbatch.replications import run_replications  # a process pool, only when asked for

        summary = run_replications(settings, source, stdout, stderr, signals, ready.cluster)
    else:
        summary = _run_once(settings, source, invalid, stdout, stderr, signals)
    summary.update(_run_facts(settings, argv, source))
    summary["exit_status"] = _with_deadline(settings, summary, stdout)
    _write_outputs(settings, summary, stderr)
    return summary["exit_status"]


def _say_notes(settings: Settings, stderr: TextIO) -> None:
    """Settings that are allowed but do nothing, said once before the run (a
    config file may set a backoff that a command line's --max-retries 0 turns off)."""
    if settings.retry_backoff_given and settings.max_retries == 0:
        stderr.write(
            f"smsbatch: note: --retry-backoff {settings.retry_backoff:g} has no effect without"
            " --max-retries (no failed attempt is retried)\n"
        )
        stderr.flush()


def _run_once(
    settings: Settings,
    source: MessageSource,
    invalid: int,
    stdout: TextIO,
    stderr: TextIO,
    signals: list[int],
) -> dict:
    """One run with the live display; its summary table printed, its summary returned."""
    display = make_display(stderr, settings.progress, source.messages, len(settings.senders))
    _setup_logging(settings.log_level, display)
    logging.getLogger("smsbatch").info("alert text: %s", visible(settings.text))  # once, not per message
    monitor = Monitor(display, settings.interval)
    run_id = new_run_id() if settings.broker and not settings.virtual else None
    runner = make_runner(settings, source, monitor, signals, run_id)
    stdout.write(fit_to_terminal(start_line(settings, source, invalid, run_id), stdout) + "\n")
    stdout.flush()
    result = against_model(settings, source, runner.run(), signals)
    monitor.close(result.snapshot)
    if settings.trace:
        names = [view.name for view in result.snapshot.senders]
        _write_file(settings.trace, lambda: trace_csv(result.trace or (), names), stderr, "trace")
    stdout.write(summary_table(result.snapshot, settings.seed, result.stopped_by))
    stdout.flush()
    summary = run_summary(result, settings.seed)
    if settings.broker:
        summary.update(broker=redact_url(settings.broker), run_id=result.run_id)
    return summary


def _run_facts(settings: Settings, argv: list[str], source: MessageSource) -> dict:
    """What the summary file says of the run beyond its figures: how to repeat it."""
    return {
        "schema": SUMMARY_SCHEMA,
        "command": shlex.join(["smsbatch", *argv]),
        "settings": settings_dict(settings, source.messages),
        "text": settings.text,
        **_segments_fields(settings.text),
        "duplicate_numbers": source.duplicate_numbers,
    }


def _with_deadline(settings: Settings, summary: dict, stdout: TextIO) -> int:
    """The exit status: the run's own, or 3 when --require-deadline and the deadline
    was missed (with replications: by any of them)."""
    status = summary["exit_status"]
    runs = summary.get("replications") or [summary]
    missed = [run for run in runs if not run["met_deadline"]]
    if settings.require_deadline and status == ExitStatus.OK and missed:
        worst = min(run["within_deadline"] for run in missed)
        stdout.write(
            f"smsbatch: deadline missed: {share_text(worst)} sent by {summary['deadline_s']:g}s"
            f"{f' in {len(missed)} of {len(runs)} replications' if len(runs) > 1 else ''},"
            f" {settings.deadline_share:.0%} required (exit 3)\n"
        )
        stdout.flush()
        return ExitStatus.DEADLINE_MISSED
    return status


def _write_outputs(settings: Settings, summary: dict, stderr: TextIO) -> None:
    """The summary file, the timeline CSV and the HTML report, each whole or not at all."""
    if settings.summary_json:
        _write_summary(settings.summary_json, summary, stderr)
    if settings.timeline and summary.get("timeline"):
        _write_file(settings.timeline, lambda: csv_text(summary["timeline"]), stderr, "timeline")
    if settings.report:
        from smsbatch.present.report import render_report  # only when asked for: it reads its assets

        _write_file(settings.report, lambda: render_report(summary), stderr, "report")


def _write_file(path: str, make_text, stderr: TextIO, what: str) -> None:
    try:
        write_text_file(path, make_text())
    except OSError as error:
        stderr.write(f"smsbatch: could not write the {what} to {path} ({error.strerror or error})\n")
        stderr.flush()
        return
    if what == "report":  # the one output a person opens next: say where it is
        stderr.write(f"smsbatch: wrote the report to {path} (open it in a browser)\n")
        stderr.flush()


def _checked_input(prog: str, stderr: TextIO, prepare):
    """(prepare(), None); or, on bad input, --help or a stop signal, (None, exit
    status), bad input said in one line."""
    try:
        return prepare(), None
    except UsageError as error:
        stderr.write(f"{prog}: error: {error}\n")
        return None, ExitStatus.USAGE
    except SystemExit as done:  # --help
        return None, int(done.code or 0)
    except (KeyboardInterrupt, _Interrupted):  # say, waiting for a FIFO's writer: no traceback
        return None, ExitStatus.INTERRUPTED


class _Interrupted(BaseException):
    """A stop signal during a wait before the run (raised by _interruptible)."""


@contextmanager
def _interruptible(signals: list[int]) -> Iterator[None]:
    """Within the block, a stop signal is noted and ends the block at once (a
    blocking open or read is not resumed); outside it, signals are only noted."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)
        raise _Interrupted

    if signals:
        raise _Interrupted
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped_before_start(ready: _Prepared, argv: list[str], signals: list[int], stderr: TextIO) -> int:
    """A stop signal came before the run started: one line, and the summary file
    with every message unsent (none, if the recipients list was not read yet)."""
    status = ExitStatus.INTERRUPTED if signals[0] == signal.SIGINT else ExitStatus.TERMINATED
    name = signal.Signals(signals[0]).name
    stderr.write(
        "smsbatch: interrupted before the run started; nothing was sent\n"
        if status == ExitStatus.INTERRUPTED
        else f"smsbatch: stopped by {name} before the run started; nothing was sent\n"
    )
    stderr.flush()
    settings = ready.settings
    if settings is None:  # stopped while the options were read: no summary file is known
        return status
    source = ready.source or source_for(settings, 0 if settings.recipients else settings.messages)
    stopped_by = f"{name} before the run started" + (
        " (the recipients were not read)" if settings.recipients and not ready.source else ""
    )
    summary = unstarted_summary(settings, source.messages, stopped_by, int(status))
    summary.update(_run_facts(settings, argv, source))
    _write_outputs(replace(settings, report=None, timeline=None), summary, stderr)
    return status


def planning_main(command: str, argv: list[str], stdout: TextIO, stderr: TextIO, signals: list[int]) -> int:
    """`smsbatch plan` and `smsbatch compare` (smsbatch/planning.py): replications in virtual time."""
    from smsbatch import planning  # a process pool, only for these commands

    prog = f"smsbatch {command}"

    def prepare():
        if command == "plan":
            settings, ns = parse_planning(argv, build_plan_parser())
            planning.knob_for(settings, ns.vary)  # bad input before anything starts
            planning.check_plan(settings, ns.probability)
            sides = (settings,)
        else:
            a, b, ns = compare_sides(argv)
            sides = (a, b)
        for settings in sides:
            _check_output_paths(settings)
        with _interruptible(signals):
            source, _ = make_source(sides[0], stderr)
            cluster = _cluster(sides[0])
        return sides, ns, source, cluster

    prepared, status = _checked_input(prog, stderr, prepare)
    if prepared is None:
        return ExitStatus.INTERRUPTED if status == ExitStatus.INTERRUPTED and signals else int(status or 0)
    sides, ns, source, cluster = prepared
    if command == "plan":
        summary = planning.run_plan(sides[0], ns.vary, ns.probability, source, stdout, stderr, signals, cluster)
    else:
        names = (
            ns.configs[0],
            ns.configs[1]
            if len(ns.configs) > 1
            else f"{ns.configs[0]} with " + ", ".join(f"{key}={value}" for key, value in ns.overrides),
        )
        summary = planning.run_compare(
            sides[0], sides[1], names, ns.independent, source, stdout, stderr, signals, cluster
        )
    summary.update(_run_facts(sides[0], [command, *argv], source))
    _write_outputs(replace(sides[0], timeline=None), summary, stderr)  # the report: its section, then the run drawn
    return int(summary["exit_status"])


def _cluster(settings: Settings) -> Any:
    """--cluster: a Dask client of the scheduler (Dask imported only then), or None."""
    if not settings.cluster:
        return None
    from smsbatch.cluster import connect

    return connect(settings.cluster, settings.broker_timeout)


def _check_broker(url: str) -> None:
    try:
        from smsbatch.broker.patient import check_reachable
    except ImportError:
        raise UsageError("argument --broker: needs the Redis client: pip install 'smsbatch[redis]'") from None
    try:
        check_reachable(url)
    except ConnectionError as error:
        raise UsageError(f"argument --broker: no Redis answers at {redact_url(url)} ({error})") from None


def worker_main(argv: list[str], stdout: TextIO, stderr: TextIO, signals: list[int]) -> int:
    """`smsbatch worker`: senders on this machine for runs started elsewhere."""

    def prepare():
        settings = parse_worker_settings(argv)
        with _interruptible(signals):
            _check_broker(settings.broker)
        return settings

    settings, status = _checked_input("smsbatch worker", stderr, prepare)
    if settings is None:
        if status == ExitStatus.INTERRUPTED:  # it had joined nothing: it leaves, as on a stop later
            stderr.write("smsbatch worker: stopped before it joined a run\n")
            return ExitStatus.OK
        return status
    from smsbatch.broker.worker import Worker

    return Worker(settings, stdout, signals).run()


def _check_output_paths(settings: Settings) -> None:
    check_output_path("--summary-json", settings.summary_json)
    check_output_path("--report", settings.report, REPORT_SUFFIXES)
    check_output_path("--timeline", settings.timeline, TIMELINE_SUFFIXES)
    check_output_path("--trace", settings.trace, TIMELINE_SUFFIXES)


def _write_summary(path: str, summary: dict, stderr: TextIO) -> None:
    """Write the summary file; if that fails at the end of a run (the disk filled
    up, the folder went away), say so in one line rather than a traceback."""
    try:
        write_summary_json(path, summary)
    except OSError as error:
        stderr.write(f"smsbatch: could not write the summary to {path} ({error.strerror or error})\n")
        stderr.flush()


def _segments_fields(text: str) -> dict:
    segments = sms_segments(text)
    return {"segments": segments.count, "encoding": segments.encoding}


def start_line(settings: Settings, source: MessageSource, invalid: int, run_id: str | None = None) -> str:
    where = (
        f"numbers from {list_name(settings.recipients)}" if settings.recipients else f"random {settings.region} mobiles"
    )
    skips = [
        plural(count, what)
        for count, what in ((invalid, "invalid line"), (source.duplicate_numbers, "duplicate number"))
        if count
    ]
    skipped = f" ({' and '.join(skips)} skipped)" if skips else ""
    seed = f"seed {settings.seed}" + ("" if settings.seed_given else " (pass --seed to repeat)")
    line = (
        f"smsbatch: {plural(source.messages, 'message')} to {where}{skipped} through "
        f"{plural(len(settings.senders), 'sender')}{' here' if settings.broker else ''}, "
        f"{settings.distribution} send times, "
        f"{'virtual time (--speed max)' if settings.virtual else f'speed x{settings.speed:g}'}, {seed}"
    )
    if run_id and settings.broker:
        broker = redact_url(settings.broker)
        line += (
            f"\nsmsbatch: run {run_id} on {broker}; add senders from any machine with: "
            f"smsbatch worker --broker {broker}"
        )
    return line + "\n" + text_line(settings.text)  # last: scripts read the lines above by position


def fit_to_terminal(lines: str, stream: TextIO) -> str:
    """Each line cut to the terminal's width, as the bars below are (a wrapped
    line breaks mid-word); whole when `stream` is not a terminal, for scripts."""
    size = terminal_size(stream) if stream.isatty() else None
    if size is None:
        return lines
    return "\n".join(cut(line, size[0]) for line in lines.split("\n"))


def text_line(text: str) -> str:
    """`smsbatch: text "EMERGENCY ALERT: ..." (1 segment, GSM-7)`, in START_LINE_WIDTH columns."""
    head, tail = 'smsbatch: text "', f'" ({sms_segments(text).describe()})'
    return head + shorten(visible(text), START_LINE_WIDTH - len(head) - len(tail)) + tail


def _escape_unencodable_output() -> None:
    """A character the terminal's encoding lacks is shown as an escape, not a
    UnicodeEncodeError that would silence the stream (PYTHONIOENCODING=ascii)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


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
