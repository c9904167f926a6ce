"""The deadline and the timeline, checked on exact virtual runs (no processes)."""

import csv
import io
import json
import os

import pytest

from smsbatch.cli import main

EXACT = (
    "-n",
    "1000",
    "--sender",
    "1:0:window=10",
    "--distribution",
    "constant",
    "--speed",
    "max",
    "--seed",
    "1",
    "--no-progress",
)  # 10 messages a second, the last at exactly 100 s


def run(tmp_path, *argv):
    out, err = io.StringIO(), io.StringIO()
    paths = {name: tmp_path / name for name in ("s.json", "t.csv", "r.html")}
    status = main(
        [*argv, "--summary-json", str(paths["s.json"]), "--timeline", str(paths["t.csv"])], stdout=out, stderr=err
    )
    return status, json.loads(paths["s.json"].read_text()), paths["t.csv"].read_text(), out.getvalue()


def test_the_share_within_the_deadline_counts_sends_due_by_then(tmp_path):
    status, s, _, out = run(tmp_path, *EXACT, "--deadline", "50s", "--deadline-share", "0.5")
    assert status == 0
    assert (s["deadline_s"], s["within_deadline"], s["met_deadline"]) == (50.0, 0.5, True)
    assert "deadline 50.0s: 50.0% sent by then; met (needs 50%)" in out


def test_a_missed_deadline_exits_3_only_when_required(tmp_path):
    status, s, _, _ = run(tmp_path, *EXACT, "--deadline", "50s")
    assert status == 0
    assert s["met_deadline"] is False
    status, s, _, out = run(tmp_path, *EXACT, "--deadline", "50s", "--require-deadline")
    assert status == 3
    assert s["exit_status"] == 3
    assert "deadline missed: 50.0% sent by 50s, 90% required (exit 3)" in out


def test_the_timeline_counts_every_attempt_and_ends_with_the_runs_sent(tmp_path):
    _, s, text, _ = run(
        tmp_path,
        "-c",
        os.path.join(os.path.dirname(__file__), "..", "configs", "emergency.ini"),
        "--speed",
        "max",
        "--seed",
        "2",
        "--no-progress",
    )
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert header[:5] == ["t_s", "sent", "failed", "retried", "backlog"]
    assert header[5:7] == ["carrier-a:attempts", "carrier-a:failed_attempts"]
    assert 200 <= len(body) <= 2000
    assert len(body) == len(s["timeline"]["rows"])
    assert int(body[-1][1]) == s["sent"]
    assert int(body[-1][3]) == s["retried"]
    attempts = sum(int(row[i]) for row in body for i, name in enumerate(header) if name.endswith(":attempts"))
    assert attempts == s["attempts"]
    assert float(body[-1][0]) == pytest.approx(s["sim_elapsed_s"], rel=0.01)
    backlog = [int(row[4]) for row in body]
    assert backlog[0] > 0
    assert backlog[-1] == 0  # the backlog drains


def test_a_100000_message_runs_report_is_under_1_mb(tmp_path):
    out = io.StringIO()
    report = tmp_path / "r.html"
    status = main(
        [
            "-c",
            os.path.join(os.path.dirname(__file__), "..", "configs", "emergency.ini"),
            "-n",
            "100000",
            "--speed",
            "max",
            "--seed",
            "3",
            "--no-progress",
            "--report",
            str(report),
        ],
        stdout=out,
        stderr=io.StringIO(),
    )
    assert status == 0
    assert 50_000 < report.stat().st_size < 1_000_000


def test_a_run_stopped_before_its_deadline_says_it_was_not_reached():
    from smsbatch.core.snapshot import Snapshot
    from smsbatch.core.stats import Stats
    from smsbatch.present.monitor import deadline_line

    stopped = Snapshot(
        messages=100,
        sent=10,
        failed=0,
        retried=0,
        elapsed=1.0,
        speed=5.0,
        stats=Stats(),
        sim_elapsed=8.2,
        sent_by_deadline=10,
        deadline=600.0,
    )
    assert "not reached: the run stopped at 8.2s with 10.0% sent" in deadline_line(stopped)
    finished = Snapshot(
        messages=100,
        sent=10,
        failed=90,
        retried=0,
        elapsed=1.0,
        speed=5.0,
        stats=Stats(),
        sim_elapsed=8.2,
        sent_by_deadline=10,
        deadline=600.0,
    )
    assert "MISSED" in deadline_line(finished)
