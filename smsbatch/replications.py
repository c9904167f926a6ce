"""--replications R: R independent runs of the same settings, side by side.

Replication 1 uses --seed itself; replication r >= 2 uses
replication_seed(seed, r), the first 63 bits of SHA-256 of "seed/replication/r",
so any replication can be repeated on its own with `--seed` set to its seed
(each is recorded in the summary). They run in --jobs processes (a
ProcessPoolExecutor, forked: each replication is a whole run, virtual or real
time, with its own children). The summary keeps replication 1's figures at
the top level, every replication's summary under `replications`, and mean,
standard deviation, a 95% confidence interval (Student's t), min and max of
the headline figures under `aggregate`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import multiprocessing
import os
import signal
import statistics
from dataclasses import replace
from typing import Any, TextIO

from setproctitle import setproctitle

from smsbatch.assembly import against_model, make_runner
from smsbatch.core.settings import Settings
from smsbatch.core.source import MessageSource
from smsbatch.core.stats import wilson
from smsbatch.core.summary import Summary, run_summary, unstarted_summary
from smsbatch.present.monitor import Monitor, NullDisplay, seconds_text
from smsbatch.realtime.children import die_with_parent
from smsbatch.realtime.status import stop_signals_caught

AGGREGATED = (
    "sim_elapsed_s",
    "reach_s.50",
    "reach_s.90",
    "reach_s.99",
    "reach_s.100",
    "within_deadline",
    "sent",
    "failed",
    "avg_send_time_s",
)
# Student's t, 97.5% quantile, by degrees of freedom (1..30); beyond, the normal's 1.96 is close.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def replication_seed(seed: int, replication: int) -> int:
    """The seed of replication `replication` (1-based): --seed itself for the first."""
    if replication == 1:
        return seed
    digest = hashlib.sha256(f"{seed}/replication/{replication}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


_SOURCE: MessageSource | None = None  # the run's messages, inherited by the forked pool


def run_one(settings: Settings, replication: int) -> Summary:
    """One whole run, quietly, as its summary dict (in a pool process)."""
    seed = replication_seed(settings.seed, replication)
    settings = replace(settings, seed=seed, replications=1)
    assert _SOURCE is not None
    source = replace(_SOURCE, seed=seed)  # recipients are read once, by the main process
    monitor = Monitor(NullDisplay(_Discard()), settings.interval)
    # SIGTERM from the main process (Ctrl-C there) stops this run warmly: its
    # children are reaped and its summary still comes back, every message counted.
    with stop_signals_caught() as signals:
        result = against_model(settings, source, make_runner(settings, source, monitor, signals).run(), signals)
    summary = run_summary(result, settings.seed)
    summary["replication"] = replication
    return summary


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _pool_initializer(parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group: the main process decides, and
    # asks a running replication to stop with SIGTERM (caught in run_one).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setproctitle("smsbatch: replications")
    # A main process killed outright takes its pool with it (and each pool
    # process its run's children): no replication goes on, or starts, after it.
    die_with_parent(parent_pid)


def figure(summary: Summary, key: str) -> float | None:
    if key.startswith("reach_s."):
        return summary["reach_s"].get(key.split(".", 1)[1])
    return summary[key]


# Where a figure can be: every aggregated figure is a count, a time or a share, never below 0; a share at most 1.
_BOUNDS = {"within_deadline": (0.0, 1.0)}


def describe(figures: list[float | None], bounds: tuple[float, float] = (0.0, math.inf)) -> dict[str, Any]:
    """mean, stdev, ci95 [low, high] (cut to what the figure can be), min, max, n of the non-null values."""
    values = [v for v in figures if v is not None]
    n = len(values)
    if not n:
        return {"mean": None, "stdev": None, "ci95": [None, None], "min": None, "max": None, "n": 0}
    mean = statistics.fmean(values)
    stdev = statistics.stdev(values) if n > 1 else 0.0
    t = _T975[n - 2] if 1 < n <= len(_T975) + 1 else 1.96
    half = t * stdev / math.sqrt(n) if n > 1 else 0.0
    return {
        "mean": mean,
        "stdev": stdev,
        "ci95": [max(bounds[0], mean - half), min(bounds[1], mean + half)],
        "min": min(values),
        "max": max(values),
        "n": n,
    }


def aggregate(summaries: list[Summary]) -> dict[str, dict[str, Any]]:
    described = {
        key: describe([figure(s, key) for s in summaries], _BOUNDS.get(key, (0.0, math.inf))) for key in AGGREGATED
    }
    met = sum(1 for s in summaries if s["met_deadline"])
    low, high = wilson(met, len(summaries))
    return {**described, "met_deadline": {"met": met, "n": len(summaries), "ci95": [low, high]}}


def _formatter(key: str):
    """How a figure of `key` is shown: a share in percent, seconds, or a count."""
    if key == "within_deadline":
        return lambda value: f"{value:.1%}"
    unit = "s" if key.endswith("_s") or key.startswith("reach") else ""
    digits = 3 if key == "avg_send_time_s" else 1
    return lambda value: f"{value:,.{digits}f}{unit}"


def aggregate_lines(agg: dict, total: int, done: int) -> str:
    lines = [f"replications: {done} of {total} done; mean, sd, 95% interval, min, max"]
    for key, d in agg.items():
        if key == "met_deadline":
            continue  # a proportion of replications: its own line, after the table
        if d["n"] == 0:
            lines.append(f"  {key:16} never reached")
            continue
        low, high = d["ci95"]
        fmt = _formatter(key)
        lines.append(
            f"  {key:16} {fmt(d['mean'])}  sd {fmt(d['stdev'])}  95% [{fmt(low)}, {fmt(high)}]"
            f"  min {fmt(d['min'])}  max {fmt(d['max'])}  (n={d['n']})"
        )
    return "\n".join(lines) + "\n"


def run_replications(
    settings: Settings, source: MessageSource, stdout: TextIO, stderr: TextIO, signals: list[int]
) -> dict:
    """Run every replication; print a line for replication 1 and the aggregate. The
    summary returned is replication 1's, with `replications` and `aggregate`; its
    exit status is the worst of the replications' (or 130/143 when interrupted)."""
    global _SOURCE
    _SOURCE = source  # not pickled: a recipients spool is an open file, shared by fork
    jobs = max(1, min(settings.jobs, settings.replications))
    summaries: dict[int, dict] = {}
    failed = False  # a replication raised (a bug, or a pool that broke): the rest are stopped
    pool = concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("fork"), initializer=_pool_initializer, initargs=(os.getpid(),)
    )
    try:
        futures = {pool.submit(run_one, settings, r): r for r in range(1, settings.replications + 1)}
        pending = set(futures)
        while pending and not signals and not failed:
            finished, pending = concurrent.futures.wait(pending, timeout=0.1)
            for future in finished:
                failed = not _collect(settings, futures[future], future, summaries, stderr) or failed
    finally:
        if signals or failed:
            _stop_running(pool, signals, stderr)
        pool.shutdown(wait=True, cancel_futures=True)
    for future in pending:  # stopped partway: what they counted still counts
        if future.done() and not future.cancelled() and futures[future] not in summaries:
            failed = not _collect(settings, futures[future], future, summaries, stderr) or failed
    top = _report(settings, [summaries[r] for r in sorted(summaries)], stdout, signals)
    if failed:
        top["exit_status"] = max(top["exit_status"], 1)
    return top


def _stop_running(pool, signals: list[int], stderr: TextIO) -> None:
    """Replications not started are dropped; running ones stop warmly (SIGTERM)."""
    if signals:
        stderr.write(f"smsbatch: {signal.Signals(signals[0]).name}: stopping the replications\n")
        stderr.flush()
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()


def _collect(settings: Settings, replication: int, future, summaries: dict[int, dict], stderr: TextIO) -> bool:
    """Keep a finished replication's summary and say so; False if it raised."""
    try:
        summary = future.result()
    except Exception as error:  # said in one line; what finished is still reported
        stderr.write(f"smsbatch: replication {replication} failed: {error!r}\n")
        return False
    summaries[replication] = summary
    if settings.progress:
        stderr.write(
            f"replication {replication} done ({len(summaries)}/{settings.replications}):"
            f" {summary['sent']} sent, {summary['failed']} failed,"
            f" {seconds_text(summary['sim_elapsed_s'])} simulated\n"
        )
        stderr.flush()
    return True


def _report(settings: Settings, summaries: list[dict], stdout: TextIO, signals: list[int]) -> dict:
    agg = aggregate(summaries)
    if summaries:
        first = summaries[0]
        stdout.write(
            f"replication {first['replication']} (seed {first['seed']}): "
            f"{first['sent']} sent, {first['failed']} failed, {first['unsent']} unsent of "
            f"{first['messages']}; {seconds_text(first['sim_elapsed_s'])} simulated\n"
        )
        stdout.write(_senders_line(first))
    stdout.write(aggregate_lines(agg, settings.replications, len(summaries)))
    if summaries:
        met = agg["met_deadline"]
        low, high = met["ci95"]
        stdout.write(
            f"deadline {seconds_text(settings.deadline)}: met by {met['met']} of {met['n']} replications,"
            f" Wilson 95% [{low:.1%}, {high:.1%}] (needs {settings.deadline_share:.0%} by then)\n"
        )
    accounted = all(s["sent"] + s["failed"] + s["unsent"] == s["messages"] for s in summaries)
    stdout.write(f"every message accounted for, in every replication: {'yes' if accounted else 'NO'}\n")
    stdout.flush()
    top = dict(summaries[0]) if summaries else _nothing_done(settings)
    top.update(replications=[_without_timeline(s) for s in summaries], aggregate=agg)
    if signals:
        top["exit_status"] = 130 if signals[0] == signal.SIGINT else 143
    elif summaries:
        top["exit_status"] = max(s["exit_status"] for s in summaries)
    return top


def _senders_line(summary: dict) -> str:
    """What each sender carried in this replication: its share of the attempts."""
    attempts = sum(s["attempts"] for s in summary["senders"]) or 1
    shares = ", ".join(f"{s['name']} {s['attempts']:,} ({s['attempts'] / attempts:.1%})" for s in summary["senders"])
    return f"  attempts by sender: {shares}\n"


def _without_timeline(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "timeline"}


def _nothing_done(settings: Settings) -> dict:
    """Stopped before any replication finished: every message of replication 1 unsent."""
    summary = unstarted_summary(settings, settings.messages, "stopped before any replication finished", 1)
    summary["replication"] = 1
    return summary
