"""A run put together from its settings: its messages (a MessageSource) and
its runner (virtual, or real-time over the local or the Redis backend). The
command line and the replications' pool processes both start runs from here."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, TextIO

from smsbatch.core.batching import choose_batch_size
from smsbatch.core.clock import Clock
from smsbatch.core.errors import UsageError
from smsbatch.core.phones import PhoneError, PhonePool, list_name, read_recipients, recipients_is_stream
from smsbatch.core.result import RunResult
from smsbatch.core.settings import Settings
from smsbatch.core.snapshot import RunMonitor, model_check
from smsbatch.core.source import MessageSource
from smsbatch.local.backend import LocalBackend
from smsbatch.present.monitor import Monitor, NullDisplay
from smsbatch.present.output import QuietStream
from smsbatch.realtime.backend import Backend
from smsbatch.realtime.runner import Runner

if TYPE_CHECKING:
    from smsbatch.virtual.runner import VirtualRunner


def make_source(settings: Settings, stderr: TextIO | None = None) -> tuple[MessageSource, int]:
    """The run's messages, and how many recipients lines were invalid."""
    try:
        if settings.recipients:
            return _recipients_source(settings, stderr)
        pool = PhonePool.for_region(settings.region)
    except PhoneError as error:
        option = "--recipients" if settings.recipients else "--region"
        raise UsageError(f"argument {option}: {error}") from None
    # Dealt without replacement; virtual time makes no numbers, but its answer is for
    # a run that could happen, so it holds to the same limit.
    if settings.messages > pool.size:
        raise UsageError(
            f"argument --messages: region {settings.region} has {pool.size:,} distinct "
            "random mobile numbers here; ask for at most that many"
        )
    return source_for(settings, settings.messages, pool=pool), 0


def _recipients_source(settings: Settings, stderr: TextIO | None) -> tuple[MessageSource, int]:
    """The list is read whole before anything starts (its count sizes the run,
    and a bad list is bad input); a stream may take a while, so say so."""
    path = settings.recipients
    assert path is not None
    if stderr is not None and recipients_is_stream(path):
        stderr.write(f"smsbatch: reading numbers from {list_name(path)} until it ends...\n")
        stderr.flush()
    limit = settings.messages if settings.messages_given else None
    recipients = read_recipients(path, settings.region, limit)
    return source_for(settings, recipients.valid, recipients=recipients), recipients.invalid


def source_for(settings: Settings, messages: int, **kwargs) -> MessageSource:
    return MessageSource(messages, choose_batch_size(settings, messages), settings.text, settings.seed, **kwargs)


def make_runner(
    settings: Settings,
    source: MessageSource,
    monitor: RunMonitor,
    signals: list[int],
    run_id: str | None = None,
    timeline: bool = True,
) -> Runner | VirtualRunner:
    """The runner for these settings: with --speed max the virtual one; else the
    one runner, with the local backend or (with --broker, only then is Redis
    imported) the Redis one. `timeline`: False when no one will read it (a
    virtual run then counts no bins; a real-time run keeps it for its model check)."""
    if settings.virtual:
        from smsbatch.virtual.runner import VirtualRunner  # numpy and the event heap, only for --speed max

        return VirtualRunner(settings, source, monitor, signals=signals, timeline=timeline)
    backend: Backend
    if settings.broker:
        from smsbatch.broker.coordinator import RedisBackend

        backend = RedisBackend(settings, source, run_id or new_run_id(), give_up=lambda: bool(signals))
    else:
        backend = LocalBackend(settings, source)
    return Runner(settings, source, monitor, backend, Clock(), signals)


def preload_virtual() -> None:
    """Import the virtual engine (numpy with it) here, in a process about to
    fork a pool for it: a forked process takes about one and a half times as
    long to import it (each page of its parent's that the import touches is
    copied first), so every pool process would pay more than this one does once."""
    import smsbatch.virtual.runner  # noqa: F401


def new_run_id() -> str:
    from smsbatch.broker import keys  # only with --broker

    return keys.new_run_id()


def against_model(
    settings: Settings, source: MessageSource, result: RunResult, signals: list[int] | None = None
) -> RunResult:
    """A real-time run's result, its figures checked against the model's: the
    same settings and seed again in virtual time (a fraction of the real run's
    time), where each sender draws the same send times and outcomes. So a run
    is faithful when its figures are the model's, whatever lateness its senders
    made up by backdating. Only a run the model describes can be compared: one
    that ended by itself with every sender of this machine (a sender that died,
    a stop, or senders elsewhere, seeded by name, keep the judgement by lag)."""
    snap = result.snapshot
    comparable = result.stopped_by == "completed" and not (snap.lost_senders or snap.requeued or snap.unsent)
    if settings.virtual or settings.broker or not comparable or snap.sim_elapsed == 0.0:
        return result
    from smsbatch.virtual.runner import VirtualRunner  # the model itself, as --speed max runs it

    quiet = Monitor(NullDisplay(QuietStream(None)), math.inf)
    virtual = replace(settings, speed=math.inf, progress=False, trace=None)  # the figures only
    model = VirtualRunner(virtual, source, quiet, signals=signals if signals is not None else []).run()
    if model.stopped_by != "completed":  # Ctrl-C during the replay: no model to compare with
        return result
    return replace(result, snapshot=replace(snap, model=model_check(snap, model.snapshot)))
