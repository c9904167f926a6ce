"""What a terminal shows: an honest ETA, and a live display that leaves no fragments."""

import math

import pyte

from smsbatch import monitor
from smsbatch.config import SenderSpec
from smsbatch.monitor import (
    BarDisplay,
    SenderView,
    Snapshot,
    cut,
    progress_line,
    seconds_text,
)
from smsbatch.stats import Stats
from smsbatch.text import display_width


def snap(messages=100, sent=0, failed=0, sim_elapsed=0.0, retries_pending=0, retried=0):
    return Snapshot(messages=messages, sent=sent, failed=failed, retried=retried, elapsed=1.0,
                    speed=1.0, stats=Stats(), sim_elapsed=sim_elapsed, retries_pending=retries_pending)


# ---- the ETA ----


def test_eta_is_the_work_left_at_the_rate_of_final_outcomes():
    s = snap(messages=100, sent=40, failed=10, sim_elapsed=10.0)  # 5 outcomes a second, 50 left
    assert s.eta == 10.0
    assert "eta 10.0s" in progress_line(s)


def test_ten_messages_all_waiting_for_retries_are_not_eta_0s():
    # 990 outcomes in 9.9 s: a count alone gives 10 / 100 = 0.1 s, and 0.0s for
    # the last few; but the 10 wait out a backoff the snapshot has no time for.
    s = snap(messages=1000, sent=980, failed=10, sim_elapsed=9.9, retries_pending=10, retried=10)
    assert s.unsent == 10
    assert math.isinf(s.eta)
    assert "eta ?" in progress_line(s) and "eta 0.0s" not in progress_line(s)


def test_the_last_retry_alone_still_has_no_eta_of_0s():
    s = snap(messages=1000, sent=999, sim_elapsed=5.0, retries_pending=1, retried=3)
    assert seconds_text(s.eta) == "?"


def test_eta_is_unknown_before_the_first_outcome():
    assert seconds_text(snap(sim_elapsed=0.0).eta) == "?"
    assert seconds_text(snap(sim_elapsed=3.0).eta) == "?"  # time passes, nothing finished yet


def test_eta_is_0s_when_every_message_has_its_outcome():
    s = snap(messages=10, sent=8, failed=2, sim_elapsed=4.0)
    assert s.eta == 0.0 and "eta 0.0s" in progress_line(s)


# ---- the live display, drawn to an emulated screen (no process) ----


def senders_snap(names, finished=50):
    views = tuple(SenderView(name, SenderSpec(0.5, 0.1), Stats(), "running") for name in names)
    return Snapshot(messages=100, sent=finished, failed=0, retried=0, elapsed=1.0, speed=1.0,
                    stats=Stats(), senders=views, sim_elapsed=10.0)


def test_lines_are_cut_in_columns_a_wide_character_counting_two():
    assert display_width(cut("東京ゲートウェイ東京ゲートウェイ", 9)) <= 9
    assert cut("東京", 3) == "東"  # no room for "..."
    assert cut("short", 40) == "short"
    lines = BarDisplay(None, 100, 2).frame(senders_snap(["東京ゲートウェイ", "大阪"]), (30, 10))
    assert len(lines) == 3 and all(display_width(line) <= 29 for line in lines)


def test_more_senders_than_the_screen_has_rows_are_counted_on_one_line():
    lines = BarDisplay(None, 100, 10).frame(senders_snap([f"gw-{i}" for i in range(10)]), (80, 5))
    assert len(lines) == 4 and lines[-1] == "  ... and 8 more senders"


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
    assert rows[2].startswith("[10.0s] 100/100 (100.0%)") and rows[3].startswith("  carrier-a (")
    assert rows[4].startswith("  東京") and len(rows) == 5
    assert all(display_width(row) <= 29 for row in rows[2:])
