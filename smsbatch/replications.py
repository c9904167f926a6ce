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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any, TextIO

from setproctitle import setproctitle

from smsbatch.assembly import against_model, make_runner, preload_virtual, source_for
from smsbatch.core.inference import half_width, precise, t975
from smsbatch.core.settings import Settings
from smsbatch.core.source import MessageSource
from smsbatch.core.stats import wilson
from smsbatch.core.summary import Summary, run_summary, unstarted_summary
from smsbatch.core.text import plural
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


def replication_seed(seed: int, replication: int) -> int:
    """The seed of replication `replication` (1-based): --seed itself for the first."""
    if replication == 1:
        return seed
    digest = hashlib.sha256(f"{seed}/replication/{replication}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


_SOURCE: MessageSource | None = None  # the run's messages, inherited by the forked pool
# What a brief summary keeps (plan and compare run thousands): the figures, not the timeline or the senders.
BRIEF_DROPS = ("timeline", "senders")


def run_one(settings: Settings, replication: int, brief: bool = False, given: MessageSource | None = None) -> Summary:
    """One whole run, quietly, as its summary dict (in a pool process, or a Dask
    worker, which is `given` the source); `brief`: without its timeline and its senders."""
    seed = replication_seed(settings.seed, replication)
    settings = replace(settings, seed=seed, replications=1)
    base = given or _SOURCE
    assert base is not None
    source = replace(base, seed=seed)  # recipients are read once, by the main process
    if settings.messages != source.messages and source.recipients is None:  # `plan --vary messages`
        source = source_for(settings, settings.messages, pool=source.pool)
    monitor = Monitor(NullDisplay(_Discard()), settings.interval)
    if given is not None:  # a Dask worker's thread: no signal handlers there, and nothing to stop warmly
        signals: list[int] = []
        result = make_runner(settings, source, monitor, signals, timeline=not brief).run()
    else:
        if _STOP_ASKED:  # the main process is stopping: a replication queued here before it said so
            raise NotStarted(replication)
        # SIGTERM from the main process (Ctrl-C there) stops this run warmly: its
        # children are reaped and its summary still comes back, every message counted.
        # Not SIGINT: Ctrl-C reaches the whole process group, and the main process
        # decides (counted here too, it made one Ctrl-C a second signal: a cold stop).
        with stop_signals_caught(which=(signal.SIGTERM,)) as signals:
            runner = make_runner(settings, source, monitor, signals, timeline=not brief)
            result = against_model(settings, source, runner.run(), signals)
        if signals:
            _stop_asked(signal.SIGTERM, None)
    summary = run_summary(result, settings.seed)
    summary["replication"] = replication
    if brief:
        for key in BRIEF_DROPS:
            summary.pop(key, None)
    return summary


def completed(summary: Summary) -> bool:
    """Did this replication run to its end (not stopped by a signal)?"""
    return bool(summary["stopped_by"] == "completed")


Task = tuple[Settings, int]  # settings, and the replication (1-based) whose seed it runs
Enough = Callable[[list[Summary]], bool]


class _LocalPool:
    """--jobs forked processes here: what the Replicator asks of a pool (submit, wait, stop, shutdown)."""

    def __init__(self, jobs: int) -> None:
        self.workers = jobs
        self.executor = concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=_pool_initializer,
            initargs=(os.getpid(),),
        )  # fmt: skip

    def submit(self, function: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        return self.executor.submit(function, *args)

    def wait(self, futures: Iterable[concurrent.futures.Future], timeout: float) -> set[concurrent.futures.Future]:
        done, _ = concurrent.futures.wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")
        return set(done)

    def stop(self) -> None:
        """Replications not started are dropped; running ones stop warmly (SIGTERM, caught in run_one)."""
        for process in list(getattr(self.executor, "_processes", {}).values()):
            process.terminate()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def shutdown(self, futures: Iterable[concurrent.futures.Future] = ()) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class Replicator:
    """Replications run side by side, kept for as many batches as a caller asks
    (a plan probes many candidates; --replications auto asks for more until
    the figures are precise): --jobs processes here, or with --cluster a Dask
    cluster's workers (smsbatch/cluster.py). Results come back in the tasks'
    order, whatever order they finished in: a stopping rule looks at
    replications 1..n, so its answer does not depend on --jobs or the cluster."""

    def __init__(
        self,
        source: MessageSource,
        jobs: int,
        signals: list[int],
        stderr: TextIO,
        progress: bool = False,
        cluster: Any = None,
        virtual: bool = False,
    ) -> None:
        global _SOURCE
        _SOURCE = source  # not pickled: a recipients spool is an open file, shared by fork
        self.signals = signals
        self.stderr = stderr
        self.progress = progress
        self.failed = False  # a replication raised (a bug, or a pool that broke): the rest are stopped
        self.pool: Any
        self.portable: MessageSource | None = None  # what a replication elsewhere is given of the source
        if cluster is not None:
            from smsbatch.cluster import ClusterPool  # only with --cluster: Dask

            self.pool = ClusterPool(cluster)
            self.portable = replace(source, recipients=None)  # virtual time counts the messages, makes none
        else:
            if virtual:  # (the runs are in virtual time: its engine imported before the pool forks)
                preload_virtual()
            self.pool = _LocalPool(max(1, jobs))
        self.jobs = self.pool.workers
        self.futures: dict[Any, int] = {}

    def __enter__(self) -> Replicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.shutdown(self.futures)

    @property
    def stopped(self) -> bool:
        return bool(self.signals) or self.failed

    def run(
        self, tasks: Iterable[Task], enough: Enough | None = None, total: int | None = None, brief: bool = False
    ) -> list[Summary]:
        """The summaries of `tasks`, in order. With `enough`, once it holds for
        the completed summaries 1..n, only those n are returned (the rest are
        dropped or cancelled). A stop signal ends it: replications not started
        are dropped, running ones stop warmly and come back stopped."""
        results = self.run_positions(tasks, enough, total, brief)
        return [results[i] for i in sorted(results)]

    def run_positions(
        self, tasks: Iterable[Task], enough: Enough | None = None, total: int | None = None, brief: bool = False
    ) -> dict[int, Summary]:
        """As run(), by the task's position (0-based): a failed or dropped task leaves a gap."""
        todo = iter(tasks)
        futures = self.futures = {}
        results: dict[int, Summary] = {}
        submitted = prefix = 0
        exhausted = decided = False
        while not self.stopped and not decided:
            while not exhausted and len(futures) < 2 * self.jobs:
                task = next(todo, None)
                if task is None:
                    exhausted = True
                    break
                futures[self.pool.submit(run_one, task[0], task[1], brief, self.portable)] = submitted
                submitted += 1
            if not futures:
                break
            for future in self.pool.wait(futures, 0.1):
                self._collect(futures.pop(future), future, results, total)
            while prefix in results and not decided:
                prefix += 1
                done = [results[i] for i in range(prefix)]
                decided = enough is not None and all(completed(s) for s in done) and enough(done)
        if decided:
            for future in futures:
                future.cancel()  # not started; running ones finish, unread
            return {i: results[i] for i in range(prefix)}
        if self.stopped:
            if self.signals:
                self.stderr.write(f"smsbatch: {signal.Signals(self.signals[0]).name}: stopping the replications\n")
                self.stderr.flush()
            self.pool.stop()
            for future, position in futures.items():  # stopped partway: what they counted still counts
                if future.done() and not future.cancelled():
                    self._collect(position, future, results, total)
        return results

    def _collect(self, position: int, future, results: dict[int, Summary], total: int | None) -> None:
        """Keep a finished replication's summary and say so (done, or stopped); a failure in one line."""
        try:
            summary = future.result()
        except NotStarted:  # queued in a pool process when the stop came: dropped, as those not sent there
            return
        except Exception as error:  # said in one line; what finished is still reported
            self.stderr.write(f"smsbatch: replication {position + 1} failed: {error!r}\n")
            self.failed = True
            return
        results[position] = summary
        if self.progress:
            state = "done" if completed(summary) else f"stopped by {summary['stopped_by']} (left out)"
            count = f"{len(results)}/{total}" if total else f"{len(results)} so far"
            self.stderr.write(
                f"replication {summary['replication']} {state} ({count}):"
                f" {summary['sent']} sent, {summary['failed']} failed,"
                f" {seconds_text(summary['sim_elapsed_s'])} simulated\n"
            )
            self.stderr.flush()


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class NotStarted(Exception):
    """A replication the pool had queued when the main process asked it to stop: never run."""


_STOP_ASKED = False  # a pool process: the main process asked it to stop (SIGTERM); it starts nothing more


def _stop_asked(signum: int, frame: object) -> None:
    global _STOP_ASKED
    _STOP_ASKED = True


def _pool_initializer(parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group: the main process decides, and
    # asks a running replication to stop with SIGTERM (caught in run_one);
    # between replications SIGTERM only says: start none (ProcessPoolExecutor
    # queues one more call than it has processes, and would run it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_asked)
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
    half = t975(n - 1) * stdev / math.sqrt(n) if n > 1 else 0.0
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
        if key in ("met_deadline", "replications"):
            continue  # a proportion of replications, and which ones: their own lines, after the table
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


def headline_key(summaries: list[Summary]) -> str:
    """The figure --replications auto makes precise: the delivered 90% time, or
    sim_elapsed_s when a replication never delivered 90%."""
    reached = all(s["delivered_reach_s"].get("90") is not None for s in summaries)
    return "delivered_reach_s.90" if reached else "sim_elapsed_s"


def headline(summaries: list[Summary]) -> tuple[str, list[float]]:
    key = headline_key(summaries)
    if key == "sim_elapsed_s":
        return key, [float(s["sim_elapsed_s"]) for s in summaries]
    return key, [float(s["delivered_reach_s"]["90"]) for s in summaries]


def auto_enough(settings: Settings) -> Enough:
    """--replications auto's stopping rule: at least MIN_AUTO, and the headline's
    95% half-width within --precision of its mean."""
    return lambda summaries: precise(headline(summaries)[1], settings.precision)


def auto_facts(settings: Settings, summaries: list[Summary]) -> dict[str, Any]:
    """How many --replications auto took, and why it stopped (the summary's `auto_replications`)."""
    done = [s for s in summaries if completed(s)]
    key, values = headline(done) if done else ("sim_elapsed_s", [])
    mean = statistics.fmean(values) if values else None
    half = half_width(values) if len(values) > 1 else None
    if len(done) == len(summaries) and precise(values, settings.precision):
        why = "precise"
    elif len(done) == len(summaries) >= settings.max_replications:
        why = "max-replications"
    else:
        why = "stopped"  # a signal (or a failure) came first
    return {
        "replications": len(done),
        "figure": key,
        "mean": mean,
        "half_width": half,
        "relative_half_width": (half / abs(mean)) if half is not None and mean else None,
        "precision": settings.precision,
        "max_replications": settings.max_replications,
        "stopped_because": why,
    }


def auto_line(facts: dict[str, Any]) -> str:
    figure, half, mean, relative = facts["figure"], facts["half_width"], facts["mean"], facts["relative_half_width"]
    shown = f"{half:.3g}s, {relative:.2%} of its mean {mean:.3g}s" if relative is not None else "not known"
    because = {
        "precise": f"within --precision {facts['precision']:.2%}",
        "max-replications": f"still above --precision {facts['precision']:.2%} at --max-replications"
        f" {facts['max_replications']:,}",
        "stopped": "stopped before it was precise",
    }[facts["stopped_because"]]
    return f"replications auto: {facts['replications']:,} run; the 95% half-width of {figure} is {shown}: {because}\n"


def replication_tasks(settings: Settings, count: int | None = None) -> Iterator[Task]:
    """Replications 1..count of `settings` (count None: --replications, or auto's --max-replications)."""
    count = count or settings.replications or settings.max_replications
    return ((settings, r) for r in range(1, count + 1))


def run_replications(
    settings: Settings, source: MessageSource, stdout: TextIO, stderr: TextIO, signals: list[int], cluster: Any = None
) -> dict:
    """Run every replication (with --replications auto, until precise); print a
    line for replication 1 and the aggregate. The summary returned is
    replication 1's, with `replications` and `aggregate`; its exit status is the
    worst of the replications' (or 130/143 when interrupted)."""
    auto = settings.replications == 0
    total = None if auto else settings.replications
    jobs = min(settings.jobs, settings.replications or settings.max_replications)
    with Replicator(source, jobs, signals, stderr, settings.progress, cluster, settings.virtual) as replicator:
        enough = auto_enough(settings) if auto else None
        summaries = replicator.run(replication_tasks(settings), enough, total)
        failed = replicator.failed
    top = _report(settings, summaries, stdout, signals)
    if auto:
        top["auto_replications"] = facts = auto_facts(settings, summaries)
        stdout.write(auto_line(facts))
        stdout.flush()
    if failed:
        top["exit_status"] = max(top["exit_status"], 1)
    return top


def _report(settings: Settings, summaries: list[dict], stdout: TextIO, signals: list[int]) -> dict:
    done = [s for s in summaries if completed(s)]
    stopped = [s for s in summaries if not completed(s)]
    agg = aggregate(done)
    agg["replications"] = {"included": len(done), "stopped": [s["replication"] for s in stopped]}
    if summaries:
        first = summaries[0]
        stdout.write(
            f"replication {first['replication']} (seed {first['seed']}): "
            f"{first['sent']} sent, {first['failed']} failed, {first['unsent']} unsent of "
            f"{first['messages']}; {seconds_text(first['sim_elapsed_s'])} simulated{_stopped_note(first)}\n"
        )
        stdout.write(_senders_line(first))
    stdout.write(aggregate_lines(agg, settings.replications or len(summaries), len(done)))
    if stopped:
        stdout.write(
            f"  left out: {plural(len(stopped), 'replication')} stopped partway"
            f" ({', '.join(str(s['replication']) for s in stopped)}), each accounting for every message\n"
        )
    unfaithful = [s["replication"] for s in done if s.get("mode") == "real-time" and not s.get("faithful", True)]
    if unfaithful:
        stdout.write(
            f"  NOT faithful to the model: {plural(len(unfaithful), 'replication')}"
            f" ({', '.join(map(str, unfaithful))}); their figures depend on this machine\n"
        )
    if done:
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


def _stopped_note(summary: Summary) -> str:
    return "" if completed(summary) else f" (stopped by {summary['stopped_by']}: left out of the aggregate)"


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
