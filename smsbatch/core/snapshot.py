"""What a runner shows of a run: a Snapshot of plain numbers, and the
monitor it hands them to (a Protocol: present/monitor.py draws them; a runner
knows nothing of drawing)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from smsbatch.core.receipts import ReceiptFigures
from smsbatch.core.settings import SenderSpec
from smsbatch.core.stats import Stats
from smsbatch.core.timeline import TimelineTable


@dataclass(frozen=True)
class SenderView:
    name: str
    spec: SenderSpec
    stats: Stats
    state: str  # running, done, died (SIGKILL), ...
    capped_s: float = 0.0  # slot-seconds held back by the rate cap with work waiting
    outages: tuple[tuple[float, float], ...] = ()  # its outages in the run, (start, end) simulated

    @property
    def down_s(self) -> float:
        """Simulated seconds it was down."""
        return sum(end - start for start, end in self.outages)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.spec.describe()})"


# A figure this close to the model's is the model's: 3% of the model's elapsed time, or
# of the messages (attempts, per sender). The real-time engine itself ends a run a little
# differently from the model (who takes the last messages), by about 1% at worst; beyond 3%
# the machine moved the figure (docs/model.md).
MODEL_TOLERANCE = 0.03


@dataclass(frozen=True)
class ModelCheck:
    """A real-time run's figures against the model's own: the same settings and
    seed run again in virtual time, where every sender draws the same send
    times and outcomes. `off` says each figure further from the model's than
    MODEL_TOLERANCE; lateness that the backdating absorbed moves none."""

    sim_elapsed: float
    reach: dict[str, float | None]
    sent: int
    failed: int
    off: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    messages: int
    sent: int
    failed: int
    retried: int
    elapsed: float  # real seconds
    speed: float
    stats: Stats  # all attempts, all senders
    senders: tuple[SenderView, ...] = ()
    requeued: int = 0
    lost_senders: int = 0
    redelivered: int = 0
    duplicates: int = 0  # reports about a message already counted (ignored)
    sim_elapsed: float = 0.0  # simulated seconds: so far, or (at the end) of the last outcome
    reach: dict[str, float | None] = field(default_factory=dict)  # percent -> simulated time
    lag: float = 0.0  # simulated seconds the run fell behind the model at worst (0 in virtual time)
    retries_pending: int = 0
    retries_back_at: float = 0.0  # simulated time the last pending retry re-enters the queue
    mode: str = "real-time"  # or "virtual"
    sent_by_deadline: int = 0
    deadline: float = 600.0  # simulated seconds
    deadline_share: float = 0.9
    timeline: TimelineTable | None = None  # at the end of a run
    model: ModelCheck | None = None  # a real-time run's figures against the model's, when they can be compared
    receipts: ReceiptFigures | None = None  # at the end of a run, when delivery receipts are modelled
    expired: int = 0  # messages not accepted within --validity (final, like sent and failed)

    @property
    def within_deadline(self) -> float:
        """The share of all messages sent by the deadline (delivered, when receipts are modelled)."""
        counted = self.receipts.by_deadline if self.receipts is not None else self.sent_by_deadline
        return counted / self.messages if self.messages else 1.0

    @property
    def delivered_reach(self) -> dict[str, float | None]:
        """When the delivered count reached each share of all messages (receipts
        not modelled: every accepted message is delivered at once, so the reach)."""
        return self.receipts.reach if self.receipts is not None else self.reach

    @property
    def met_deadline(self) -> bool:
        return self.within_deadline >= self.deadline_share

    @property
    def finished(self) -> int:
        return self.sent + self.failed + self.expired

    @property
    def unsent(self) -> int:
        return self.messages - self.finished

    @property
    def faithful(self) -> bool:
        """The run kept to the model: each of its figures within MODEL_TOLERANCE of
        the model's (when they could be compared: see assembly.against_model), or else
        it fell behind by at most 1% of its simulated time. A run whose every
        outcome came at time 0 (senders that never wait) is the model's however
        late it was: no lateness can move a figure of 0."""
        if self.sim_elapsed == 0.0:
            return True
        if self.model is not None:
            return not self.model.off
        return self.lag <= 0.01 * self.sim_elapsed

    @property
    def rate(self) -> float:
        """Finished messages per simulated second."""
        return self.finished / self.sim_elapsed if self.sim_elapsed > 0 else 0.0

    @property
    def eta(self) -> float:
        """Simulated seconds left: the messages with no final outcome yet (retries
        waiting for their backoff included) over the rate of final outcomes so
        far, and never less than the wait until the last pending retry is back in
        the queue (a count alone says 0.0s for the last seconds of such a run).
        math.inf (shown `?`) when there is no rate yet."""
        if self.unsent <= 0:
            return 0.0
        if self.rate <= 0:
            return math.inf
        by_rate = self.unsent / self.rate
        if self.retries_pending:
            return max(by_rate, self.retries_back_at - self.sim_elapsed)
        return by_rate


class RunMonitor(Protocol):
    """What a runner asks of the monitor it is given (present/monitor.py's Monitor)."""

    def due_in(self) -> float:
        """Real seconds until it wants the next snapshot."""
        ...

    def tick(self, snapshot_of: Callable[[], Snapshot]) -> None:
        """A snapshot, made by `snapshot_of` only if it is due."""
        ...

    def note(self, text: str) -> None: ...


def model_check(run: Snapshot, model: Snapshot) -> ModelCheck:
    """`run`'s figures against `model`'s (the same settings and seed in virtual time)."""
    off: list[str] = []
    # (figure, run's time, model's time, the counts whose shares they are: run's, model's)
    times: list[tuple[str, float | None, float | None, int, int]] = [
        ("sim_elapsed", run.sim_elapsed, model.sim_elapsed, 0, 0)
    ]
    times += [(f"reach {p}%", run.reach.get(p), model.reach.get(p), run.sent, model.sent) for p in model.reach]
    if model.receipts is not None:
        got, wanted = run.receipts.delivered if run.receipts else run.sent, model.receipts.delivered
        times += [
            (f"delivered {p}%", run.delivered_reach.get(p), model.delivered_reach.get(p), got, wanted)
            for p in model.reach
        ]
    for name, real, want, count, model_count in times:
        if real is None or want is None:
            # Reached on one side only. If the counts agree within the tolerance (one
            # message of 800 failed in the model only: 100% "never" against 37.9s), the
            # count is the figure and it is right: no warning that cries wolf.
            if real != want and abs(count - model_count) > MODEL_TOLERANCE * run.messages:
                off.append(f"{name} {_maybe_seconds(real)} against the model's {_maybe_seconds(want)}")
        elif abs(real - want) > MODEL_TOLERANCE * model.sim_elapsed:
            change = f" ({(real / want - 1) * 100:+.1f}%)" if want else ""
            off.append(f"{name} {real:,.1f}s against the model's {want:,.1f}s{change}")
    counts = [("sent", run.sent, model.sent, run.messages), ("failed", run.failed, model.failed, run.messages)]
    counts += [("expired", run.expired, model.expired, run.messages)] if model.expired or run.expired else []
    attempts = sum(view.stats.attempts for view in model.senders)
    counts += [
        (f"{mine.name} attempts", mine.stats.attempts, theirs.stats.attempts, attempts)
        for mine, theirs in zip(run.senders, model.senders, strict=False)
    ]
    for name, real_count, wanted, scale in counts:
        if abs(real_count - wanted) > MODEL_TOLERANCE * scale:
            off.append(f"{name} {real_count:,} against the model's {wanted:,}")
    if run.met_deadline != model.met_deadline:  # near the share asked for, a small drift flips the verdict
        verdict = {True: "met", False: "missed"}
        off.append(f"deadline {verdict[run.met_deadline]} against the model's {verdict[model.met_deadline]}")
    return ModelCheck(model.sim_elapsed, dict(model.reach), model.sent, model.failed, tuple(off))


def _maybe_seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:,.1f}s"
