"""The monitor: the only code that draws.

The runner hands it a Snapshot (plain numbers) every tick; rendering is pure
string formatting, so tests draw to a StringIO with a fake clock. In a terminal
it draws tqdm bars (one overall, one line per sender); otherwise it prints one
plain line per interval, so logs and CI stay readable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TextIO

from smsbatch.clock import Clock
from smsbatch.config import SenderSpec
from smsbatch.output import write_text_file
from smsbatch.stats import Stats
from smsbatch.text import display_width, pad_left, pad_right

@dataclass(frozen=True)
class SenderView:
    name: str
    spec: SenderSpec
    stats: Stats
    state: str  # running, done, died (SIGKILL), ...

    @property
    def label(self) -> str:
        return f"{self.name} ({self.spec.describe()})"


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
    mode: str = "real-time"  # or "virtual"

    @property
    def finished(self) -> int:
        return self.sent + self.failed

    @property
    def unsent(self) -> int:
        return self.messages - self.finished

    @property
    def faithful(self) -> bool:
        """The run kept to the model: it fell behind by at most 1% of its simulated time."""
        return self.lag <= 0.01 * self.sim_elapsed

    @property
    def rate(self) -> float:
        """Finished messages per simulated second."""
        return self.finished / self.sim_elapsed if self.sim_elapsed > 0 else 0.0

    @property
    def eta(self) -> float:
        """Simulated seconds left: the messages with no final outcome yet (retries
        waiting for their backoff included) over the rate of final outcomes so far.

        math.inf (shown `?`) when there is no rate yet, and while retries wait for
        their backoff: the run cannot end before the last of them is back in the
        queue, and when that is the snapshot does not say. A count alone says
        0.0s for the last simulated seconds of such a run; `?` is honest."""
        if self.unsent <= 0:
            return 0.0
        if self.rate <= 0 or self.retries_pending > 0:
            return math.inf
        return self.unsent / self.rate


def seconds_text(seconds: float) -> str:
    if math.isinf(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_line(snap: Snapshot) -> str:
    percent = 100.0 * snap.finished / snap.messages if snap.messages else 100.0
    retried = f" retried {snap.retried}" if snap.retried else ""
    return (
        f"[{seconds_text(snap.sim_elapsed)}] {snap.finished}/{snap.messages} ({percent:.1f}%)"
        f" sent {snap.sent} failed {snap.failed}{retried}"
        f" | avg {snap.stats.mean:.3f}s/msg | {snap.rate:.1f} msg/s | eta {seconds_text(snap.eta)}"
    )


def sender_line(view: SenderView, sim_elapsed: float) -> str:
    stats = view.stats
    rate = stats.attempts / sim_elapsed if sim_elapsed > 0 else 0.0
    return (
        f"  {view.label}: {stats.sent} sent, {stats.failed} failed,"
        f" avg {stats.mean:.3f}s, {rate:.1f}/s [{view.state}]"
    )


class LineDisplay:
    """One plain line per refresh: for logs, pipes and CI."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def draw(self, snap: Snapshot) -> None:
        self.stream.write(progress_line(snap) + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class BarDisplay:
    """tqdm bars in a terminal: the overall bar and one status line per sender."""

    def __init__(self, stream: TextIO, messages: int, sender_count: int) -> None:
        from tqdm import tqdm  # only when drawing bars: it is slow to import

        tqdm.monitor_interval = 0  # no monitor thread: the runner may fork after drawing
        self.tqdm = tqdm
        self.stream = stream
        self.last: Snapshot | None = None
        # leave=False: on close the bars clear themselves and the last state is
        # printed once as plain lines (closing stacked bars tears them otherwise).
        common = dict(file=stream, leave=False, mininterval=0, miniters=0, dynamic_ncols=True)
        self.common = common
        self.total = tqdm(total=messages, unit="msg", position=0,
                          bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {desc}", **common)
        self.lines = [tqdm(total=0, position=i + 1, bar_format="{desc}", **common)
                      for i in range(sender_count)]

    def draw(self, snap: Snapshot) -> None:
        self.last = snap
        while len(self.lines) < len(snap.senders):  # a sender joined (through a broker)
            self.lines.append(self.tqdm(total=0, position=len(self.lines) + 1, bar_format="{desc}",
                                        **self.common))
        self.total.n = snap.finished
        self.total.set_description_str(progress_line(snap).split(") ", 1)[-1], refresh=False)
        self.total.refresh()
        for line, view in zip(self.lines, snap.senders):
            line.set_description_str(sender_line(view, snap.sim_elapsed), refresh=True)

    def note(self, text: str) -> None:
        self.tqdm.write(text, file=self.stream)

    def close(self) -> None:
        for bar in [*reversed(self.lines), self.total]:
            bar.close()
        if self.last is not None:
            lines = [progress_line(self.last)]
            lines += [sender_line(view, self.last.sim_elapsed) for view in self.last.senders]
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()


class NullDisplay:
    """--no-progress: notes still go out, the live display does not."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def draw(self, snap: Snapshot) -> None:
        pass

    def note(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


def make_display(stream: TextIO, progress: bool, messages: int, sender_count: int):
    if not progress:
        return NullDisplay(stream)
    if stream.isatty():
        return BarDisplay(stream, messages, sender_count)
    return LineDisplay(stream)


@dataclass
class Monitor:
    """Redraws the display every `interval` seconds of the injected clock."""

    display: object
    interval: float
    clock: Clock = field(default_factory=Clock)
    next_draw: float = 0.0

    def due_in(self) -> float:
        return max(0.0, self.next_draw - self.clock.now())

    def tick(self, snapshot_of) -> None:
        now = self.clock.now()
        if now >= self.next_draw:
            self.display.draw(snapshot_of())
            self.next_draw = now + self.interval

    def note(self, text: str) -> None:
        self.display.note(text)

    def close(self, snap: Snapshot) -> None:
        self.display.draw(snap)
        self.display.close()


# ---- the end of a run ----


def speed_text(speed: float) -> str:
    return "max" if math.isinf(speed) else f"{speed:g}"


def reach_line(snap: Snapshot) -> str:
    parts = [f"{p}% {'never' if t is None else seconds_text(t)}" for p, t in snap.reach.items()]
    return "  reached " + ", ".join(parts) + " (simulated)"


def faithful_line(snap: Snapshot) -> str:
    if snap.mode == "virtual":
        return "  model: exact (virtual time)"
    if snap.faithful:
        return f"  model: faithful (fell behind by at most {snap.lag:.3g}s simulated)"
    return (f"  model: NOT faithful: fell behind by up to {snap.lag:.3g}s simulated "
            f"(over 1% of {snap.sim_elapsed:.3g}s); the figures depend on this machine. "
            "Use --speed max for the model's answer, or a lower --speed")


def summary_table(snap: Snapshot, seed: int, stopped_by: str) -> str:
    s = snap.stats
    accounted = "yes" if snap.sent + snap.failed + snap.unsent == snap.messages else "NO"
    lines = [
        f"smsbatch summary (seed {seed}, {snap.mode}, {stopped_by})",
        f"  messages {snap.messages} = sent {snap.sent} + failed {snap.failed} + unsent {snap.unsent}"
        f"  (every message accounted for: {accounted})",
        f"  attempts {s.attempts}, retried {snap.retried}, re-queued {snap.requeued},"
        f" re-delivered {snap.redelivered}, duplicates ignored {snap.duplicates},"
        f" lost senders {snap.lost_senders}",
        f"  send time avg {s.mean:.3f}s  p50 {s.percentile(0.5):.3g}s"
        f"  p95 {s.percentile(0.95):.3g}s  p99 {s.percentile(0.99):.3g}s",
        f"  elapsed {seconds_text(snap.elapsed)} real, {seconds_text(snap.sim_elapsed)} simulated;"
        f" {snap.rate:.1f} msg/s simulated",
        reach_line(snap),
        faithful_line(snap),
        "",
    ]
    header = ("sender", "mean s", "fail%", "attempts", "sent", "failed", "fail% seen", "avg s",
              "p50 s", "p95 s", "p99 s", "state")
    rows = [header] + [
        (
            v.name, f"{v.spec.mean:g}", f"{v.spec.fail_rate:.1%}", str(v.stats.attempts),
            str(v.stats.sent), str(v.stats.failed),
            f"{v.stats.failed / v.stats.attempts:.1%}" if v.stats.attempts else "-",
            f"{v.stats.mean:.3f}", f"{v.stats.percentile(0.5):.3g}",
            f"{v.stats.percentile(0.95):.3g}", f"{v.stats.percentile(0.99):.3g}", v.state,
        )
        for v in snap.senders
    ]
    # Widths in terminal columns, not characters: a name in CJK takes two a character.
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [pad_right(row[0], widths[0])] + [pad_left(c, w) for c, w in zip(row[1:-1], widths[1:-1])]
        lines.append("  " + "  ".join(cells + [row[-1]]))
    return "\n".join(lines) + "\n"


def summary_dict(snap: Snapshot, seed: int, stopped_by: str, exit_status: int, produced,
                 startup_s: float = 0.0) -> dict:
    s = snap.stats
    return {
        "messages": snap.messages,
        "sent": snap.sent,
        "failed": snap.failed,
        "unsent": snap.unsent,
        "produced": produced,
        "attempts": s.attempts,
        "retried": snap.retried,
        "requeued": snap.requeued,
        "redelivered": snap.redelivered,
        "duplicates": snap.duplicates,
        "lost_senders": snap.lost_senders,
        **_times(s.snapshot()),
        "elapsed_s": snap.elapsed,
        "startup_s": startup_s,
        "sim_elapsed_s": snap.sim_elapsed,
        "reach_s": dict(snap.reach),
        "mode": snap.mode,
        "lag_s": snap.lag,
        "faithful": snap.faithful,
        "speed": speed_text(snap.speed) if math.isinf(snap.speed) else snap.speed,
        "seed": seed,
        "stopped_by": stopped_by,
        "exit_status": exit_status,
        "senders": [
            {
                "name": v.name,
                "mean_s": v.spec.mean,
                "fail_rate": v.spec.fail_rate,
                "window": v.spec.window,
                "rate": v.spec.rate or None,
                "state": v.state,
                **v.stats.snapshot(),  # attempts, sent, failed (per attempt), times
                "rate_per_s": v.stats.rate,
            }
            for v in snap.senders
        ],
    }


def _times(snapshot: dict) -> dict:
    """The send-time figures of a Stats snapshot (its counts are per attempt)."""
    return {key: value for key, value in snapshot.items() if key.endswith("_s")}


def write_summary_json(path: str, summary: dict) -> None:
    """Whole or not at all (see write_text_file); the alert text and names as they are, in UTF-8."""
    write_text_file(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
