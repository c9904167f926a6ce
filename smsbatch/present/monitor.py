"""The monitor: the only code that draws.

The runner hands it a Snapshot (plain numbers) every tick; rendering is pure
string formatting, so tests draw to a StringIO with a fake clock. In a terminal
it draws tqdm bars (one overall, one line per sender); otherwise it prints one
plain line per interval, so logs and CI stay readable.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from smsbatch.core.clock import Clock
from smsbatch.core.snapshot import ModelCheck, SenderView, Snapshot
from smsbatch.core.summary import Summary
from smsbatch.core.text import char_width, display_width, pad_left, pad_right, plural, share_text, shorten
from smsbatch.present.output import TextSink, write_text_file


def seconds_text(seconds: float) -> str:
    if math.isinf(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
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
        f"  {view.label}: {stats.sent} sent, {plural(stats.failed, 'failed attempt')},"
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


# Why the live display places its lines itself (tqdm only renders the bar, with
# format_meter) instead of through tqdm's bar objects: tqdm draws a
# bar the moment it is made (before the start line is printed, which then lands
# on the bar and leaves `| 0/300` after it); it places stacked bars by moving
# down with newlines and back up N rows, leaving the cursor at the end of the
# top bar; and dynamic_ncols only cuts what it draws next. When a terminal
# narrows, most of them (tmux, VTE, iTerm2, kitty) re-wrap each old bar into
# several rows: "up N rows" no longer reaches the top, and the old rows stay
# as fragments. Drawing the block ourselves is a few lines and holds in both
# kinds of terminal: every frame is one write, each line cut to the width read
# at that draw (an ioctl per frame, no SIGWINCH handler in a process that forks
# senders); the cursor is left at column 0 of the block's first row, which a
# re-wrap moves along with that row, so the next frame's erase-to-end-of-screen
# (`\x1b[J`) clears the old block however many rows it now takes; autowrap is
# off while a frame is written, so a frame drawn for a width that changed
# before the terminal read it is clipped, never wrapped onto extra rows.
# Exact where a narrower terminal cuts its rows (xterm; pyte in the tests) or
# re-wraps them and keeps the cursor on its row; tmux 3.3 sometimes puts the
# cursor a row or two below it after a re-wrap, and what is above is out of
# reach of any cursor movement (tests/test_terminal.py, docs/report-and-summary.md).
CLEAR_LINE, CLEAR_BELOW = "\x1b[2K", "\x1b[J"
NO_WRAP, WRAP = "\x1b[?7l", "\x1b[?7h"


def terminal_size(stream: TextIO) -> tuple[int, int] | None:
    """(columns, rows) of the terminal `stream` writes to; None if it is not one."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None
    return (size.columns or 80, size.lines or 24)  # a pty nobody sized says 0 x 0


def cut(text: str, width: int) -> str:
    """`text` in at most `width` terminal columns (a wide CJK character takes
    two), ending in `...` if it was cut and there is room for it."""
    if display_width(text) <= width:
        return text
    if width >= 8:
        return shorten(text, width)
    kept, used = [], 0
    for char in text:
        used += char_width(char)
        if used > width:
            break
        kept.append(char)
    return "".join(kept)


def bar_line(finished: int, messages: int, bar_width: int) -> str:
    """tqdm's own bar: ` 81%|████████▏ | 243/300`. The percentage is floored,
    so 99.7% reads 99% until the last message."""
    from tqdm import tqdm  # only when drawing bars: it is slow to import

    percent = math.floor(100 * finished / messages) if messages else 100
    tail = f"| {finished}/{messages}"
    meter: str = tqdm.format_meter(
        finished,
        messages or 1,
        0,
        ncols=bar_width + 5 + len(tail),
        prefix=f"{percent:3d}%",
        bar_format="{desc}|{bar}" + tail,
    )
    return meter


def fit(lines: list[str], columns: int, rows: int, head: int = 2) -> list[str]:
    """`lines` (`head` lines of progress, then one per sender) on a screen of
    columns x rows: each cut to columns - 1 (a line that ends in the last column
    leaves some terminals about to wrap), and at most rows - 1 of them (the
    cursor cannot go back up past the top of the screen), the senders that do
    not fit counted on the last line."""
    room = max(1, rows - 1)
    if len(lines) > room and room <= head:
        lines = lines[:room]
    elif len(lines) > room:
        hidden = len(lines) - (room - 1)
        lines = [*lines[: room - 1], f"  ... and {hidden} more sender{'s' if hidden != 1 else ''}"]
    return [cut(line, columns - 1) for line in lines]


class BarDisplay:
    """In a terminal: an overall bar and a status line per sender, redrawn in place
    (see the comment above for how, and why not with tqdm)."""

    def __init__(self, stream: TextIO, messages: int, sender_count: int) -> None:
        # Nothing is drawn until the first snapshot: the start line goes first.
        self.stream = stream
        self.last: Snapshot | None = None
        self.lines: list[str] = []  # the status line per sender last drawn (snapshots bring joiners)
        self.shown = 0  # rows of the block on screen; the cursor is at column 0 of its first

    def frame(self, snap: Snapshot, size: tuple[int, int] | None) -> list[str]:
        """The block's lines for a terminal of (columns, rows); None: uncut."""
        bar_width = max(5, min(30, (size[0] - 1) // 4)) if size else 20
        # The bar on a line of its own: short, so it is rarely cut or re-wrapped.
        overall = bar_line(snap.finished, snap.messages, bar_width)
        line = progress_line(snap)  # "[9.7s] 243/300 (81.0%) sent 243 ...": the time and the rest
        figures = f"  {line.split(' ', 1)[0]} {line.split(') ', 1)[-1]}"
        self.lines = [sender_line(view, snap.sim_elapsed) for view in snap.senders]
        lines = [overall, figures, *self.lines]
        return lines if size is None else fit(lines, *size)

    def _frame_text(self, snap: Snapshot) -> str:
        return self._block(self.frame(snap, terminal_size(self.stream)))

    def _block(self, lines: list[str]) -> str:
        """Text that draws `lines` over the block on screen, erasing what is left
        of it, and puts the cursor back at column 0 of the first row."""
        self.shown = len(lines)
        up = f"\x1b[{len(lines) - 1}A" if len(lines) > 1 else ""
        return "\r" + NO_WRAP + "\n".join(CLEAR_LINE + line for line in lines) + CLEAR_BELOW + WRAP + up + "\r"

    def _erase(self) -> str:
        """Text that erases the block row by row: erasing to the end of the screen
        from its top-left corner would make tmux keep a copy in its scrollback."""
        text = self._block([""] * self.shown) if self.shown else ""
        self.shown = 0
        return text

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def draw(self, snap: Snapshot) -> None:
        self.last = snap
        self._write(self._frame_text(snap))

    def note(self, text: str) -> None:
        """A line above the block, for good: the block is erased, the line written
        whole (the terminal wraps it, as any output), and the block drawn again."""
        if self.shown and self.last is not None:  # shown: drawn, so there is a last snapshot
            self._write(self._erase() + text + "\n" + self._frame_text(self.last))
        else:
            self._write(text + "\n")

    def close(self) -> None:
        """The block goes; the last state stays, as plain lines cut to the width."""
        text = self._erase()
        if self.last is not None:
            lines = [progress_line(self.last)]
            lines += [sender_line(view, self.last.sim_elapsed) for view in self.last.senders]
            size = terminal_size(self.stream)
            text += "\n".join(lines if size is None else [cut(line, size[0] - 1) for line in lines])
            text += "\n"
        if text:
            self._write(text)


class NullDisplay:
    """--no-progress: notes still go out, the live display does not."""

    def __init__(self, stream: TextSink) -> None:
        self.stream = stream

    def draw(self, snap: Snapshot) -> None:
        pass

    def note(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class Display(Protocol):
    """What the monitor draws on: BarDisplay, LineDisplay or NullDisplay."""

    def draw(self, snap: Snapshot) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


def make_display(stream: TextIO, progress: bool, messages: int, sender_count: int) -> Display:
    if not progress:
        return NullDisplay(stream)
    if stream.isatty():
        return BarDisplay(stream, messages, sender_count)
    return LineDisplay(stream)


@dataclass
class Monitor:
    """Redraws the display every `interval` seconds of the injected clock."""

    display: Display
    interval: float
    clock: Clock = field(default_factory=Clock)
    next_draw: float = 0.0

    def due_in(self) -> float:
        return max(0.0, self.next_draw - self.clock.now())

    def tick(self, snapshot_of: Callable[[], Snapshot]) -> None:
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
    return "  reached " + _reach_parts(snap.reach) + " (simulated)"


def _reach_parts(reach: dict[str, float | None]) -> str:
    return ", ".join(f"{p}% {'never' if t is None else seconds_text(t)}" for p, t in reach.items())


def receipt_lines(snap: Snapshot) -> list[str]:
    """Delivered first when receipts are modelled; else one line on what "reached" counts."""
    receipts = snap.receipts
    if receipts is None:
        return ["  receipts not modelled: reach and the deadline count accepted messages (see --dlr-median)"]
    pending = f" + receipt pending {receipts.pending}" if receipts.pending else ""
    expired = f" + expired {receipts.expired}" if receipts.expired else ""
    return [
        f"  delivered {_reach_parts(receipts.reach)} (simulated, by delivery receipt)",
        f"  sent {snap.sent} = delivered {receipts.delivered} + undeliverable {receipts.undeliverable}"
        f" + no receipt {receipts.no_receipt}{pending}{expired}",
    ]


def gateway_line(snap: Snapshot) -> list[str]:
    """What the gateways did, when they did anything: throttled and interrupted attempts, downtime."""
    s = snap.stats
    down = [f"{v.name} {seconds_text(v.down_s)}" for v in snap.senders if v.down_s]
    if not (s.throttled or s.interrupted or down):
        return []
    parts = [f"throttled {s.throttled}", f"interrupted {s.interrupted}"]
    parts += [f"down: {', '.join(down)}"] if down else []
    return ["  gateways: " + ", ".join(parts) + " (attempts that went round again, no retry used)"]


def deadline_line(snap: Snapshot) -> str:
    if not snap.met_deadline and snap.unsent and snap.sim_elapsed < snap.deadline:
        return (
            f"  deadline {seconds_text(snap.deadline)}: not reached: the run stopped at "
            f"{seconds_text(snap.sim_elapsed)} with {share_text(snap.within_deadline)} sent"
        )
    verdict = "met" if snap.met_deadline else "MISSED"
    caveat = "" if snap.faithful else " (by a run NOT faithful to the model: see above)"
    counted = "delivered" if snap.receipts is not None else "sent"
    return (
        f"  deadline {seconds_text(snap.deadline)}: {share_text(snap.within_deadline)} {counted} by then; "
        f"{verdict} (needs {snap.deadline_share:.0%}){caveat}"
    )


def faithful_line(snap: Snapshot) -> str:
    if snap.mode == "virtual":
        return "  model: exact (virtual time)"
    if snap.model is not None and snap.sim_elapsed > 0:
        return _model_line(snap, snap.model)
    if snap.faithful:
        return f"  model: faithful (fell behind by at most {snap.lag:.3g}s simulated)"
    return (
        f"  model: NOT faithful: fell behind by up to {snap.lag:.3g}s simulated "
        f"(over 1% of {snap.sim_elapsed:.3g}s); the figures depend on this machine. "
        "Use --speed max for the model's answer, or a lower --speed"
    )


def _model_line(snap: Snapshot, model: ModelCheck) -> str:
    if not model.off:
        return (
            f"  model: faithful (every figure within 3% of the model's, the same run in virtual time:"
            f" {snap.sim_elapsed:,.1f}s against {model.sim_elapsed:,.1f}s; fell behind by at most {snap.lag:.3g}s)"
        )
    more = f", and {plural(len(model.off) - 1, 'other figure')}" if len(model.off) > 1 else ""
    return (
        f"  model: NOT faithful: {model.off[0]}{more} (over 3% off); the figures depend on this machine."
        " Use --speed max for the model's answer, or a lower --speed"
    )


SENDER_HEADER = (
    "sender",
    "mean s",
    "fail%",
    "attempts",
    "sent",
    "failed attempts",
    "fail% seen",
    "avg s",
    "p50 s",
    "p95 s",
    "p99 s",
    "state",
)


def summary_table(snap: Snapshot, seed: int, stopped_by: str) -> str:
    rows = [SENDER_HEADER] + [_sender_row(v) for v in snap.senders]
    return "\n".join(_summary_head(snap, seed, stopped_by) + _table_lines(rows)) + "\n"


def _summary_head(snap: Snapshot, seed: int, stopped_by: str) -> list[str]:
    """The run's figures, above the table of senders."""
    s = snap.stats
    accounted = "yes" if snap.sent + snap.failed + snap.expired + snap.unsent == snap.messages else "NO"
    expired = f" + expired {snap.expired}" if snap.expired else ""
    return [
        f"smsbatch summary (seed {seed}, {snap.mode}, {stopped_by})",
        f"  messages {snap.messages} = sent {snap.sent} + failed {snap.failed}{expired} + unsent {snap.unsent}"
        f"  (every message accounted for: {accounted})",
        f"  attempts {s.attempts}, failed attempts {s.failed}, retried {snap.retried}, re-queued {snap.requeued},"
        f" re-delivered {snap.redelivered}, duplicates ignored {snap.duplicates},"
        f" lost senders {snap.lost_senders}",
        *gateway_line(snap),
        f"  send time avg {s.mean:.3f}s  p50 {s.percentile(0.5):.3g}s"
        f"  p95 {s.percentile(0.95):.3g}s  p99 {s.percentile(0.99):.3g}s",
        f"  elapsed {seconds_text(snap.elapsed)} real, {seconds_text(snap.sim_elapsed)} simulated;"
        f" {snap.rate:.1f} msg/s simulated",
        *(receipt_lines(snap)[:1] if snap.receipts is not None else []),
        reach_line(snap),
        *(receipt_lines(snap)[1:] if snap.receipts is not None else receipt_lines(snap)),
        faithful_line(snap),
        deadline_line(snap),
        "",
    ]


def _sender_row(v: SenderView) -> tuple[str, ...]:
    return (
        v.name,
        f"{v.spec.mean:g}",
        f"{v.spec.fail_rate:.1%}",
        str(v.stats.attempts),
        str(v.stats.sent),
        str(v.stats.failed),
        f"{v.stats.failed / v.stats.attempts:.1%}" if v.stats.attempts else "-",
        f"{v.stats.mean:.3f}",
        f"{v.stats.percentile(0.5):.3g}",
        f"{v.stats.percentile(0.95):.3g}",
        f"{v.stats.percentile(0.99):.3g}",
        v.state,
    )


def _table_lines(rows: list[tuple[str, ...]]) -> list[str]:
    """Names left-aligned, figures right-aligned, the state last and unpadded."""
    # Widths in terminal columns, not characters: a name in CJK takes two a character.
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [pad_right(row[0], widths[0])] + [pad_left(c, w) for c, w in zip(row[1:-1], widths[1:-1], strict=False)]
        lines.append("  " + "  ".join([*cells, row[-1]]))
    return lines


def write_summary_json(path: str, summary: Summary) -> None:
    """Whole or not at all (see write_text_file); the alert text and names as they are, in UTF-8."""
    write_text_file(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
