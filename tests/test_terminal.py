"""What a terminal shows: an honest ETA, and a live display that leaves no fragments."""

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pyte
import pytest
from conftest import start
from wcwidth import wcwidth

from smsbatch.config import SenderSpec
from smsbatch.core.stats import Stats
from smsbatch.core.text import display_width
from smsbatch.present import monitor
from smsbatch.present.monitor import (
    NO_WRAP,
    BarDisplay,
    SenderView,
    Snapshot,
    cut,
    progress_line,
    seconds_text,
)


def snap(messages=100, sent=0, failed=0, sim_elapsed=0.0, retries_pending=0, retried=0, retries_back_at=0.0):
    return Snapshot(
        messages=messages,
        sent=sent,
        failed=failed,
        retried=retried,
        elapsed=1.0,
        speed=1.0,
        stats=Stats(),
        sim_elapsed=sim_elapsed,
        retries_pending=retries_pending,
        retries_back_at=retries_back_at,
    )


# ---- the ETA ----


def test_eta_is_the_work_left_at_the_rate_of_final_outcomes():
    s = snap(messages=100, sent=40, failed=10, sim_elapsed=10.0)  # 5 outcomes a second, 50 left
    assert s.eta == 10.0
    assert "eta 10.0s" in progress_line(s)


def test_ten_messages_all_waiting_for_retries_are_not_eta_0s():
    # 990 outcomes in 9.9 s: a count alone gives 10 / 100 = 0.1 s, and 0.0s for
    # the last few; but the 10 wait out a backoff until 19.9 s.
    s = snap(messages=1000, sent=980, failed=10, sim_elapsed=9.9, retries_pending=10, retried=10, retries_back_at=19.9)
    assert s.unsent == 10
    assert s.eta == pytest.approx(10.0)
    assert "eta 10.0s" in progress_line(s)
    assert "eta 0.0s" not in progress_line(s)


def test_the_last_retry_alone_is_due_when_it_is_back():
    s = snap(messages=1000, sent=999, sim_elapsed=5.0, retries_pending=1, retried=3, retries_back_at=8.0)
    assert s.eta == 3.0
    assert seconds_text(snap(messages=10, sim_elapsed=0.0).eta) == "?"  # no rate yet


# ---- the live display, drawn to an emulated screen (no process) ----


def senders_snap(names, finished=50):
    views = tuple(SenderView(name, SenderSpec(0.5, 0.1), Stats(), "running") for name in names)
    return Snapshot(
        messages=100,
        sent=finished,
        failed=0,
        retried=0,
        elapsed=1.0,
        speed=1.0,
        stats=Stats(),
        senders=views,
        sim_elapsed=10.0,
    )


def test_lines_are_cut_in_columns_a_wide_character_counting_two():
    assert display_width(cut("東京ゲートウェイ東京ゲートウェイ", 9)) <= 9
    assert cut("東京", 3) == "東"  # no room for "..."
    assert cut("short", 40) == "short"
    lines = BarDisplay(None, 100, 2).frame(senders_snap(["東京ゲートウェイ", "大阪"]), (30, 10))
    assert len(lines) == 4
    assert all(display_width(line) <= 29 for line in lines)


def test_more_senders_than_the_screen_has_rows_are_counted_on_one_line():
    lines = BarDisplay(None, 100, 10).frame(senders_snap([f"gw-{i}" for i in range(10)]), (80, 5))
    assert len(lines) == 4
    assert lines[-1] == "  ... and 9 more senders"


def test_redraws_notes_and_a_narrower_screen_leave_nothing_behind(monkeypatch):
    screen = pyte.Screen(60, 12)
    out = pyte.Stream(screen)

    class Tty:
        def write(self, text):
            out.feed(text.replace("\n", "\r\n"))  # as a tty's ONLCR does

        def flush(self):
            pass

    monkeypatch.setattr(monitor, "terminal_size", lambda stream: (screen.columns, screen.lines))
    out.feed("smsbatch: start\r\n")
    display = BarDisplay(Tty(), 100, 2)
    names = ["carrier-a", "東京ゲートウェイ"]
    display.draw(senders_snap(names, 10))
    display.draw(senders_snap(names, 20))
    display.note("sender 2 died (SIGKILL); 3 in-flight messages re-queued")
    screen.resize(12, 30)  # narrower: pyte cuts the rows, as xterm does
    display.draw(senders_snap(names, 30))
    display.draw(senders_snap(names[:1], 40))  # fewer lines than before
    display.draw(senders_snap(names, 100))
    display.close()
    rows = [row.rstrip() for row in screen.display if row.strip()]
    assert rows[:2] == ["smsbatch: start", "sender 2 died (SIGKILL); 3 in-"]
    assert rows[2].startswith("[10.0s] 100/100 (100.0%)")
    assert rows[3].startswith("  carrier-a (")
    assert rows[4].startswith("  東京")
    assert len(rows) == 5
    assert all(display_width(row) <= 29 for row in rows[2:])


# ---- the live display on a real terminal ----
#
# smsbatch runs on a pty, as in a terminal; what it writes is fed to pyte, a
# terminal emulator, and the tests look at the screen it ends with. pyte cuts
# lines when it narrows (as xterm does) where tmux and most desktop terminals
# re-wrap them; the display is built for both, and tmux is checked by hand
# (see docs/report-and-summary.md, What you see).

ARGV = ["-n", "300", "--sender", "0.05:0", "--sender", "0.1:0", "--speed", "20", "--interval", "0.05", "--seed", "1"]
ROWS = 100  # room for the whole run at 40 columns: nothing scrolls out of sight


class Terminal(pyte.Screen):
    """A pyte screen that notes every piece of text drawn past its right edge."""

    def __init__(self, columns: int, rows: int) -> None:
        super().__init__(columns, rows)
        self.overflows: list[tuple[bool, str]] = []  # (autowrap on?, text)

    def draw(self, data: str) -> None:
        if self.cursor.x + sum(max(0, wcwidth(c)) for c in data) > self.columns:
            self.overflows.append((pyte.modes.DECAWM in self.mode, data))
        super().draw(data)


def set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def run_on_a_terminal(columns: int, resize_to: int | None = None, timeout: float = 30.0):
    """smsbatch with stdout and stderr on a pty of `columns`; with resize_to, the
    pty is narrowed (and the process group sent SIGWINCH) once a few frames are
    drawn. Returns the emulated screen, everything written, and the width at the end."""
    master, slave = pty.openpty()
    set_size(slave, ROWS, columns)
    screen = Terminal(columns, ROWS)
    feed = pyte.ByteStream(screen).feed
    proc = start([sys.executable, "-m", "smsbatch", *ARGV], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    raw = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the run and its children have closed the pty
                break
            if not chunk:
                break
            raw += chunk
            feed(chunk)
            if resize_to and screen.columns != resize_to and raw.count(NO_WRAP.encode()) >= 2:
                screen.resize(ROWS, resize_to)  # the terminal first, as a window is dragged
                set_size(master, ROWS, resize_to)
                os.killpg(proc.pid, signal.SIGWINCH)
        else:
            raise AssertionError(f"no end within {timeout}s; the screen:\n" + "\n".join(screen.display))
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return screen, raw.decode(), screen.columns


def rows_of(line: str, written_at: int, now: int) -> list[str]:
    """The rows `line` takes, written at `written_at` columns and then cut to
    `now` (pyte, like xterm, cuts rows when the terminal narrows)."""
    chunks = [line[i : i + written_at] for i in range(0, len(line), written_at)] or [""]
    return [chunk[:now].rstrip() for chunk in chunks]


def screen_rows(screen) -> list[str]:
    rows = [row.rstrip() for row in screen.display]
    while rows and not rows[-1]:
        rows.pop()
    return rows


def check_the_screen(screen, raw: str, started_at: int, columns: int) -> None:
    """The screen, top to bottom: the start lines whole, the last state of the
    display (one line of progress and one per sender, each on a row), the summary;
    nothing else, so no fragment of a bar or a status line is left anywhere."""
    text = raw.replace("\r\n", "\n")
    start = text.index("smsbatch: ")
    start_lines = text[start:].split("\n", 2)[:2]  # one write, from stdout
    assert start_lines[1].startswith('smsbatch: text "')
    assert "\x1b" not in "".join(start_lines)
    for line in start_lines:  # cut to the width it was written at, as the bars are: no word broken by a wrap
        assert display_width(line) <= started_at, line
    summary = text[text.index("smsbatch summary (") :]
    assert "\x1b" not in summary
    expected_start = [row for line in start_lines for row in rows_of(line, started_at, columns)]
    expected_summary = [row for line in summary.splitlines() for row in rows_of(line, columns, columns)]

    rows = screen_rows(screen)
    assert rows[: len(expected_start)] == expected_start
    last_state = rows[len(expected_start) : len(rows) - len(expected_summary)]
    assert rows[len(rows) - len(expected_summary) :] == expected_summary
    assert len(last_state) == 3, "\n".join(rows)
    progress, *senders = last_state
    assert progress.startswith("[")
    assert "] 300/300 (100.0%) sent 300" in progress[:columns]
    assert [s[:12] for s in senders] == ["  sender 1 (", "  sender 2 ("]
    for line in last_state:  # whole, or cut to the width with "..."
        assert len(line) < columns
        assert line.endswith(("eta 0.0s", "[done]", "..."))
    assert start == 0, f"something was drawn before the start line: {text[:80]!r}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("columns", [40, 120])
def test_the_display_leaves_no_fragments(columns, no_children_left):
    screen, raw, _ = run_on_a_terminal(columns)
    check_the_screen(screen, raw, started_at=columns, columns=columns)
    # Nothing the display draws (autowrap off) runs past the right edge; only
    # smsbatch's plain output (the start line, the summary) may wrap.
    assert not [text for autowrap, text in screen.overflows if not autowrap]
    assert raw.count(NO_WRAP) >= 3  # it did draw live, more than once


@pytest.mark.timeout(60)
def test_after_narrowing_the_terminal_mid_run_no_fragments(no_children_left):
    screen, raw, columns = run_on_a_terminal(120, resize_to=50)
    assert columns == 50  # narrowed while the display was live
    check_the_screen(screen, raw, started_at=120, columns=50)
