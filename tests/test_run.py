"""Whole runs, in processes, at high --speed with small counts."""

import io
import json
import re
import subprocess
import sys

import pytest
from conftest import check_accounts

from smsbatch.cli import main

pytestmark = pytest.mark.timeout(60)


def run(tmp_path, *argv):
    out, err = io.StringIO(), io.StringIO()
    summary = tmp_path / "summary.json"
    status = main([*argv, "--summary-json", str(summary)], stdout=out, stderr=err)
    return status, json.loads(summary.read_text()), out.getvalue(), err.getvalue()


def accounted(data):
    check_accounts(data)


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
    accounted(data)
    assert data["sent"] + data["failed"] == 50000
    assert data["avg_send_time_s"] == 0.0
    assert data["produced"] == 50000
    sure, coin = data["senders"]
    assert sure["attempts"] + coin["attempts"] == 50000  # each message once, no retries
    assert sure["failed"] == 0
    assert coin["failed"] / coin["attempts"] == pytest.approx(0.5, abs=0.03)  # thousands of draws
    assert data["failed"] == coin["failed"]


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
    accounted(data)
    assert data["unsent"] == 0
    windowed, capped = data["senders"]
    assert windowed["attempts"] > 0
    assert capped["attempts"] > 0
    assert windowed["attempts"] + capped["attempts"] == 2000  # nothing fails: each message once
    # The cap, exactly: zero-wait sends started 2000 a simulated second, each
    # gap of 1/2000 s spent waiting on the cap (or, at most, for work).
    assert capped["rate_per_s"] == pytest.approx(2000, rel=1e-6)
    assert capped["avg_send_time_s"] == 0.0
    assert 0 < capped["capped_s"] <= (capped["attempts"] - 1) / 2000 + 1e-9
    assert data["sim_elapsed_s"] >= (capped["attempts"] - 1) / 2000
    # The window: hundreds of 1 s (mean) lognormal sends in flight at once.
    assert windowed["avg_send_time_s"] == pytest.approx(1.0, rel=0.1)
    assert windowed["capped_s"] == 0.0
    assert data["sim_elapsed_s"] < windowed["attempts"] * 1.0 / 10  # far faster than one at a time


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
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert "smsbatch: 200 messages to random US mobiles through 2 senders" in out
    assert "speed x100, seed 7" in out
    totals = re.search(r"messages 200 = sent (\d+) \+ failed (\d+) \+ unsent 0 ", out)
    assert totals, out
    assert "(every message accounted for: yes)" in out
    # The senders of the file, one table row each: name, mean, fail%, attempts, sent, failed.
    rows = re.findall(r"^  (sender \d) +([\d.]+) +([\d.]+)% +(\d+) +(\d+) +(\d+) ", out, re.MULTILINE)
    assert [row[:3] for row in rows] == [("sender 1", "0.01", "10.0"), ("sender 2", "0.02", "20.0")]
    assert sum(int(row[3]) for row in rows) == 200
    assert sum(int(row[4]) for row in rows) == int(totals[1])
    assert sum(int(row[5]) for row in rows) == int(totals[2])


@pytest.mark.timeout(60)
def test_virtual_replications_load_the_engine_before_the_pool_forks_and_real_time_ones_do_not():
    # A forked process imports numpy and the engine about one and a half times as slowly as its parent
    # (copy-on-write), so virtual replications import them once, before forking; real time needs neither.
    code = (
        "import sys, io; from smsbatch.cli import main; from smsbatch import replications; "
        "seen = []; pool = replications._LocalPool.__init__; "
        "replications._LocalPool.__init__ = lambda self, jobs: "
        "(seen.append('numpy' in sys.modules), pool(self, jobs))[1]; "
        "argv = ['-n', '20', '--sender', '0.01:0', '--replications', '2', '--jobs', '2', '--no-progress']; "
        "main([*argv, *sys.argv[1:]], io.StringIO(), io.StringIO()); print(seen)"
    )
    for extra, loaded in ((["--speed", "max"], "[True]"), (["--speed", "100"], "[False]")):
        proc = subprocess.run([sys.executable, "-c", code, *extra], capture_output=True, text=True, timeout=50)
        assert proc.stdout.strip() == loaded, (extra, proc.stdout, proc.stderr)
