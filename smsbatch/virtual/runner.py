"""A run in virtual time (`--speed max`): the engine, the monitor, the result.

No process and no queue: the producer costs no simulated time in the model,
so the messages are counted rather than made (no phone numbers are drawn),
and the senders are SenderModels stepped by the VirtualEngine. The monitor
still redraws every --interval real seconds, showing simulated time.
"""

from __future__ import annotations

import signal
import traceback
from dataclasses import dataclass, field, replace

from smsbatch.core.clock import Clock
from smsbatch.core.result import ExitStatus, RunResult, exit_status
from smsbatch.core.sender_model import RunOutages, SenderModel, account_caps
from smsbatch.core.settings import Settings
from smsbatch.core.snapshot import RunMonitor, SenderView, Snapshot
from smsbatch.core.source import MessageSource
from smsbatch.core.stats import Stats
from smsbatch.core.timeline import Timeline, TimelineTable, first_width
from smsbatch.virtual.engine import Outcome, Progress, VirtualEngine


@dataclass
class VirtualRunner:
    settings: Settings
    source: MessageSource
    monitor: RunMonitor
    clock: Clock = field(default_factory=Clock)
    signals: list[int] = field(default_factory=list)  # SIGINT/SIGTERM received, in order
    # Keep the timeline? A plan's replications drop it (brief summaries): the
    # engine then counts no bins at all, a fifth of a fast-path run.
    timeline: bool = True

    def run(self) -> RunResult:
        started = self.clock.now()
        settings = self.settings
        self.outages = RunOutages(settings)
        models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
        timeline = (
            Timeline([spec.name for spec in settings.senders], first_width(settings, self.source.messages))
            if self.timeline
            else None
        )
        engine = VirtualEngine(
            models,
            self.source.messages,
            timeline,
            settings.deadline,
            trace=bool(settings.trace),
            accounts=account_caps(settings),
            outages=self.outages,
        )

        def tick(progress: Progress) -> bool:
            self.monitor.tick(lambda: self._live(progress, self.clock.now() - started))
            if self.signals:
                name = signal.Signals(self.signals[0]).name
                self.monitor.note(f"smsbatch: {name}: stopping at {progress.now:.1f}s simulated")
            return not self.signals

        try:
            outcome = engine.run(tick)
        except Exception:  # a bug of ours: say so in full, and still account for every message
            self.monitor.note(f"smsbatch: internal error, stopping:\n{traceback.format_exc().rstrip()}")
            return self._broken(engine.progress, self.clock.now() - started)
        table = None
        if timeline is not None:
            timeline.outages = [list(self.outages.until(i, outcome.sim_elapsed)) for i in range(len(settings.senders))]
            table = timeline.as_dict(outcome.sim_elapsed)
        snapshot = self._final(outcome, self.clock.now() - started, table)
        return RunResult(
            snapshot,
            self._exit_status(outcome),
            self._stopped_by(outcome),
            self.source.messages,
            0.0,
            trace=outcome.trace,
        )

    def _broken(self, progress: Progress, elapsed: float) -> RunResult:
        """The run as far as the last look at it went: what was counted then, the rest unsent."""
        snapshot = self._snapshot(self._views(progress.stats_now(), "stopped"), elapsed, progress, progress.now)
        return RunResult(snapshot, ExitStatus.UNSENT, "internal error", self.source.messages, 0.0)

    def _views(
        self, stats: list[Stats], state: str, capped: list[float] | None = None, until: float = 0.0
    ) -> tuple[SenderView, ...]:
        capped = capped or [0.0] * len(stats)
        return tuple(
            SenderView(spec.name, spec, st, state, held, self.outages.until(i, until))
            for i, (spec, st, held) in enumerate(zip(self.settings.senders, stats, capped, strict=False))
        )

    def _snapshot(
        self, views: tuple[SenderView, ...], elapsed: float, counts: Progress | Outcome, sim_elapsed: float
    ) -> Snapshot:
        total = Stats()
        for view in views:
            total.merge(view.stats)
        return Snapshot(
            messages=self.source.messages,
            sent=counts.sent,
            failed=counts.failed,
            retried=counts.retried,
            elapsed=elapsed,
            sim_elapsed=sim_elapsed,
            speed=self.settings.speed,
            stats=total,
            senders=views,
            mode="virtual",
            deadline=self.settings.deadline,
            deadline_share=self.settings.deadline_share,
        )

    def _live(self, progress: Progress, elapsed: float) -> Snapshot:
        return self._snapshot(self._views(progress.stats_now(), "running"), elapsed, progress, progress.now)

    def _final(self, outcome: Outcome, elapsed: float, timeline: TimelineTable | None) -> Snapshot:
        state = "stopped" if outcome.interrupted else "done"
        return replace(
            self._snapshot(
                self._views(outcome.stats, state, outcome.capped, outcome.sim_elapsed),
                elapsed,
                outcome,
                outcome.sim_elapsed,
            ),
            reach=outcome.reach,
            sent_by_deadline=outcome.sent_by_deadline,
            receipts=outcome.receipts,
            timeline=timeline,
            expired=outcome.expired,
        )

    def _stopped_by(self, outcome: Outcome) -> str:
        if not outcome.interrupted:
            return "completed"
        return signal.Signals(self.signals[0]).name

    def _exit_status(self, outcome: Outcome) -> ExitStatus:
        return exit_status(self.signals, self.source.messages - outcome.sent - outcome.failed - outcome.expired)
