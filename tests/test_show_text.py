"""Show what is sent: the alert text and its SMS segments in the start line
and the summary file, once in the INFO log, and a summary table that stays
aligned whatever the sender names are written in."""

import json
import subprocess
import sys

import pytest

from smsbatch.cli import text_line
from smsbatch.config import SenderSpec
from smsbatch.core.snapshot import SenderView, Snapshot
from smsbatch.core.stats import Stats
from smsbatch.core.text import display_width
from smsbatch.present.monitor import summary_table

pytestmark = pytest.mark.timeout(60)


def _run(tmp_path, *argv):
    summary = tmp_path / "s.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "smsbatch",
            "-n",
            "20",
            "--sender",
            "0:0",
            "--no-progress",
            "--seed",
            "1",
            "--summary-json",
            str(summary),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr, json.loads(summary.read_text())


def test_start_line_and_summary_show_the_text_and_its_segments(tmp_path, no_children_left):
    out, _, data = _run(tmp_path)
    text_lines = [line for line in out.splitlines() if line.startswith("smsbatch: text ")]
    assert text_lines == [
        'smsbatch: text "EMERGENCY ALERT: Flash flood warning in your area until 18:00..." (1 segment, GSM-7)'
    ]
    assert data["text"].startswith("EMERGENCY ALERT: Flash flood warning")
    assert data["text"].endswith("roads.")
    assert (data["segments"], data["encoding"]) == (1, "GSM-7")


def test_a_unicode_text_is_kept_whole_in_the_summary(tmp_path, no_children_left):
    text = "Alerte inondation: évacuez 🌊 " * 3
    _, _, data = _run(tmp_path, "--text", text)
    assert data["text"] == text
    assert data["encoding"] == "UCS-2"
    assert data["segments"] == 2


@pytest.mark.parametrize(
    "text",
    [
        "short",
        "x" * 1600,
        "日本語の緊急警報" * 40,
        "two\nlines\tand an \x1b[31mescape",
    ],
)
def test_the_text_line_fits_100_columns_on_one_line(text):
    line = text_line(text)
    assert display_width(line) <= 100
    assert "\n" not in line
    assert "\x1b" not in line


def test_log_info_shows_the_text_once_per_run(tmp_path, no_children_left):
    _, err, _ = _run(tmp_path, "--log", "INFO", "--text", "Boil water notice")
    assert err.count("Boil water notice") == 1
    assert "INFO alert text: Boil water notice" in err
    assert sum(line.startswith("INFO message ") for line in err.splitlines()) == 20


def test_summary_table_stays_aligned_with_wide_names():
    stats = Stats()
    stats.record(0.5, True)
    views = tuple(
        SenderView(name, SenderSpec(0.5, 0.1), stats, "done") for name in ("東京ゲートウェイ", "gw-b", "e\u0301cole")
    )
    snap = Snapshot(
        messages=3, sent=3, failed=0, retried=0, elapsed=1.0, speed=1.0, stats=stats + stats + stats, senders=views
    )
    rows = summary_table(snap, seed=1, stopped_by="completed").splitlines()[-4:]
    # every row has its state column ("state" or "done") at the same terminal column
    columns = {display_width(row[: row.rindex(" ") + 1]) for row in rows}
    assert len(columns) == 1, rows
