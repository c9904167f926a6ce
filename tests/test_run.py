"""Whole runs, in processes, at high --speed with small counts."""

import io
import json
import subprocess
import sys

import pytest

from smsbatch.cli import main

pytestmark = pytest.mark.timeout(60)


def run(tmp_path, *argv):
    out, err = io.StringIO(), io.StringIO()
    summary = tmp_path / "summary.json"
    status = main([*argv, "--summary-json", str(summary)], stdout=out, stderr=err)
    return status, json.loads(summary.read_text()), out.getvalue(), err.getvalue()


def accounted(data):
    assert data["sent"] + data["failed"] + data["unsent"] == data["messages"]


def test_senders_measure_what_they_were_set_to(tmp_path, no_children_left):
    status, data, out, err = run(
        tmp_path,
        "--messages",
        "6000",
        "--sender",
        "0.01:0.1",
        "--sender",
        "0.02:0.3:name=slow",
        "--speed",
        "100",
        "--seed",
        "1",
        "--interval",
        "0.2",
        "--distribution",
        "exponential",
    )
    assert status == 0
    accounted(data)
    assert data["unsent"] == 0
    assert data["seed"] == 1
    fast, slow = data["senders"]
    assert slow["name"] == "slow"
    assert fast["name"] == "sender 1"
    assert fast["attempts"] + slow["attempts"] == 6000  # each message once
    for sender in (fast, slow):
        assert sender["failed"] / sender["attempts"] == pytest.approx(sender["fail_rate"], abs=0.04)
        assert sender["avg_send_time_s"] == pytest.approx(sender["mean_s"], rel=0.1)
    # Twice as fast, about twice the share of the work.
    assert fast["attempts"] / slow["attempts"] == pytest.approx(2.0, rel=0.2)
    assert data["failed"] == fast["failed"] + slow["failed"]
    assert "every message accounted for: yes" in out
    assert "[" in err
    assert "msg/s" in err


def test_zero_wait_pipeline(tmp_path, no_children_left):
    status, data, _, _ = run(
        tmp_path, "--messages", "50000", "--sender", "0:0", "--sender", "0:0.5", "--no-progress", "--seed", "2"
    )
    assert status == 0
    assert data["sent"] + data["failed"] == 50000
    assert data["avg_send_time_s"] == 0.0
    assert data["produced"] == 50000


def test_retries(tmp_path, no_children_left):
    status, data, _out, err = run(
        tmp_path,
        "--messages",
        "400",
        "--sender",
        "0.01:0.5",
        "--sender",
        "0.01:0.5",
        "--max-retries",
        "3",
        "--retry-backoff",
        "0.02",
        "--speed",
        "50",
        "--seed",
        "3",
    )
    assert status == 0
    accounted(data)
    assert data["unsent"] == 0
    # A message fails for good only if all 4 attempts fail: 1/16 of them.
    assert data["failed"] / 400 == pytest.approx(1 / 16, abs=0.05)
    assert data["attempts"] == 400 + data["retried"]
    assert data["retried"] > 300  # about 400 * (1/2 + 1/4 + 1/8)
    assert sum(s["attempts"] for s in data["senders"]) == data["attempts"]
    assert "retried" in err


def test_window_and_rate_fields(tmp_path, no_children_left):
    status, data, _, _ = run(
        tmp_path,
        "--messages",
        "2000",
        "--sender",
        "1:0:window=500",
        "--sender",
        "0:0:rate=2000",
        "--speed",
        "20",
        "--seed",
        "4",
    )
    assert status == 0
    assert data["unsent"] == 0
    windowed, capped = data["senders"]
    assert windowed["attempts"] > 0
    assert capped["attempts"] > 0


def test_recipients_file(tmp_path, no_children_left):
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+14155552671\nnonsense\n(202) 555-0143\n+447400123456\n")
    status, data, out, _ = run(tmp_path, "--recipients", str(numbers), "--sender", "0:0", "--seed", "5")
    assert status == 0
    assert data["messages"] == 3
    assert data["sent"] == 3
    assert "1 invalid line skipped" in out


def test_log_info_logs_every_message_once(tmp_path, no_children_left):
    status, data, _, err = run(
        tmp_path,
        "--messages",
        "300",
        "--sender",
        "0.001:0.2",
        "--sender",
        "0.001:0.2",
        "--speed",
        "100",
        "--log",
        "INFO",
        "--no-progress",
        "--seed",
        "6",
    )
    assert status == 0
    ids = [int(line.split()[2]) for line in err.splitlines() if line.startswith("INFO message ")]
    assert sorted(ids) == list(range(300))
    assert sum(" failed by " in line for line in err.splitlines()) == data["failed"]


def test_seed_is_chosen_and_printed_when_not_given(tmp_path, no_children_left):
    _, data, out, _ = run(tmp_path, "--messages", "10", "--sender", "0:0")
    assert f"seed {data['seed']} (pass --seed to repeat)" in out


@pytest.mark.timeout(60)
def test_command_line_entry_point(tmp_path, no_children_left):
    ini = tmp_path / "run.ini"
    ini.write_text("messages = 200\nsender = [0.01:0.1, 0.02:0.2]\nspeed = 100\ninterval = 0.1\n")
    result = subprocess.run(
        [sys.executable, "-m", "smsbatch", "-c", str(ini), "--seed", "7"], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 0, result.stderr
    assert "messages 200 = sent" in result.stdout
    assert "Traceback" not in result.stderr
