"""The chaos harness (scripts/chaos.py): a smoke run of 12 quick
random trials, every one of which must hold; its trials replay from their
seeds; its checks catch what they are there to catch."""

import copy
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import communicate_or_kill, load_script, start, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAOS = os.path.join(ROOT, "scripts", "chaos.py")


chaos = load_script("chaos")


def _chaos(*argv: str, timeout: float) -> tuple[int, str, str]:
    proc = start([sys.executable, CHAOS, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = communicate_or_kill(proc, timeout)
    return proc.returncode, out, err


# The smoke run's master seed: its 12 quick trials draw 11 of the 14 quick faults
# (kill-sender, sigterm and stop-worker are left to their twins: kill-senders,
# sigterm-twice, kill-worker), through Redis with workers and in each local mode.
SMOKE_SEED, SMOKE_TRIALS = 11953, 12


def test_the_smoke_trials_cover_the_faults_and_the_modes():
    trials = [chaos.draw_trial(seed, True, True, None) for seed in chaos.trial_seeds(SMOKE_SEED, SMOKE_TRIALS)]
    assert len({trial.fault for trial in trials}) >= 11
    assert any(trial.broker and trial.workers and trial.fault == "kill-worker" for trial in trials)
    assert any(trial.replications > 1 for trial in trials)
    assert any(trial.recipients for trial in trials)
    assert any(trial.virtual for trial in trials)
    assert any(not (trial.broker or trial.virtual) and trial.replications == 1 for trial in trials)


@pytest.mark.timeout(120)
def test_a_smoke_run_of_random_trials_all_hold():
    argv = ("--quick", "--trials", str(SMOKE_TRIALS), "--seed", str(SMOKE_SEED), "--time-limit", "30")
    status, out, err = _chaos(*argv, timeout=100)
    held = re.search(r"^(\d+) of (\d+) trials held", out, re.MULTILINE)
    assert held, out + err
    assert status == 0, out + err  # each failure is printed with its replay command
    assert held[1] == held[2]
    assert int(held[2]) >= 10  # the time limit may cut a slow machine's run short, not to nothing
    assert re.search(r"^all\s+\d+\s+\d+\s+0$", out, re.MULTILINE)  # the table's last row: no failure
    assert "Traceback" not in err


def test_a_trial_replays_from_its_seed():
    status, listing, _ = _chaos("--trials", "6", "--seed", "5", "--dry-run", timeout=30)
    assert status == 0
    lines = listing.splitlines()
    assert len(lines) == 6
    seed = re.match(r"trial (\d+):", lines[3])[1]
    _, again, _ = _chaos("--trial", seed, "--dry-run", timeout=30)
    assert again.splitlines() == [lines[3]]  # the same configuration, fault and moment
    _, other, _ = _chaos("--trials", "6", "--seed", "6", "--dry-run", timeout=30)
    assert other != listing


def test_the_trials_cover_every_fault():
    trials = [chaos.draw_trial(seed, False, True, None) for seed in chaos.trial_seeds(21, 300)]
    assert {trial.fault for trial in trials} == set(chaos.FAULTS)
    assert any(trial.broker and trial.workers for trial in trials)
    assert any(trial.replications > 1 for trial in trials)
    assert any(trial.recipients for trial in trials)
    assert any(trial.virtual for trial in trials)


# ---- the checks catch what they are for ----


@pytest.fixture(scope="module")
def real_summary(tmp_path_factory) -> dict:
    """A real run's summary, with retries and a deadline that cuts it (made once: the tests damage copies)."""
    path = tmp_path_factory.mktemp("chaos") / "s.json"
    command = [sys.executable, "-m", "smsbatch", "-n", "300", "--sender", "0.1:0.3", "--sender", "0.2:0.1"]
    command += ["--max-retries", "2", "--speed", "max", "--seed", "4", "--deadline", "5", "--no-progress"]
    subprocess.run([*command, "--summary-json", str(path)], stdout=subprocess.DEVNULL, timeout=60, check=True)
    return json.loads(path.read_text())


def test_a_real_summary_passes_every_check(real_summary):
    summary = real_summary
    assert 0 < summary["within_deadline"] < 1
    assert summary["retried"] > 0
    assert chaos.check_summary(summary) == []


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (lambda s: s.update(unsent=s["unsent"] + 1), "messages"),
        (lambda s: s.update(duplicates=s["duplicates"] + 3), "attempts"),
        (lambda s: s["senders"][0].update(attempts=s["senders"][0]["attempts"] + 1), "senders' attempts"),
        (lambda s: s["timeline"]["rows"][-1].__setitem__(1, s["sent"] + 2), "timeline's last sent"),
        (lambda s: s.update(within_deadline=min(1.0, s["within_deadline"] + 0.2)), "within_deadline"),
        (lambda s: s["reach_s"].update({"50": s["reach_s"]["50"] / 2}), "reach_s[50]"),
        (lambda s: s["reach_s"].update({"100": 1.0}), "reach_s[100]"),
    ],
)
def test_a_damaged_summary_is_caught(real_summary, damage, found):
    damaged = copy.deepcopy(real_summary)
    damage(damaged)
    problems = chaos.check_summary(damaged)
    assert any(found in problem for problem in problems), problems


def test_what_a_trial_leaves_is_found_by_its_session_whatever_its_title():
    proc = start(["sleep", "60"])  # a session of its own, as the harness starts everything

    def exec_done() -> bool:  # until then the child is a copy of pytest, its command line not yet sleep's
        return os.path.basename(os.readlink(f"/proc/{proc.pid}/exe")) == "sleep"

    wait_until(exec_done, 10)
    titles = chaos.sessions_of({proc.pid})
    assert titles == {proc.pid: "sleep 60"}
    assert chaos.sessions_of({proc.pid + 10**7}) == {}


def test_the_exit_status_the_faults_call_for():
    trial = chaos.draw_trial(1, False, False, ["sigterm"])
    assert chaos.expected_statuses(trial, applied=True) == {143}
    assert chaos.expected_statuses(trial, applied=False) == {0}  # the run ended before the moment came
    trial.fault = "kill-main"
    assert chaos.expected_statuses(trial, applied=True) == {-9}
