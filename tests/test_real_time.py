"""Real time held to the model: runs at a modest speed agree with virtual time,
and a run that cannot keep up says so (faithful: false)."""

import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)
EMERGENCY = Path(__file__).resolve().parent.parent / "configs" / "emergency.ini"


def virtual_runs(tmp_path, *argv, replications=10):
    """The model: the mean of replications in virtual time."""
    path = tmp_path / "model.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smsbatch",
            *argv,
            "--speed",
            "max",
            "--no-progress",
            "--replications",
            str(replications),
            "--summary-json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text())


@pytest.mark.timeout(60)
def test_a_slow_sender_does_not_sit_on_work_a_fast_one_could_do(processes):
    run = processes.run(
        "-n",
        "100",
        "--sender",
        "0.05:0",
        "--sender",
        "10:0",
        "--distribution",
        "constant",
        "--speed",
        "20",
        "--seed",
        "1",
        "--no-progress",
    ).finish()
    run.accounted()
    assert run.summary["sim_elapsed_s"] == pytest.approx(10.0, rel=0.05)  # the model: exactly 10 s
    assert [s["attempts"] for s in run.summary["senders"]] == [99, 1]


@pytest.mark.timeout(90)
def test_real_time_at_a_modest_speed_agrees_with_virtual_time(tmp_path, processes):
    settings = (
        "-n",
        "3000",
        "--sender",
        "0.2:0.05:window=10",
        "--sender",
        "1:0.1:window=20:rate=15",
        "--max-retries",
        "1",
        "--retry-backoff",
        "2",
        "--seed",
        "4",
    )
    model = virtual_runs(tmp_path, *settings)["aggregate"]
    run = processes.run(*settings, "--speed", "20", "--no-progress").finish()
    run.accounted()
    s = run.summary
    assert s["mode"] == "real-time"
    assert s["faithful"] is True, (s["lag_s"], s["sim_elapsed_s"])
    assert s["sim_elapsed_s"] == pytest.approx(model["sim_elapsed_s"]["mean"], rel=0.03)
    assert s["reach_s"]["90"] == pytest.approx(model["reach_s.90"]["mean"], rel=0.03)


@pytest.mark.timeout(60)
def test_lateness_the_backdating_absorbs_moves_no_figure_and_the_run_is_faithful(processes):
    # 50,000 sends of 0.1 ms at x1000: 0.1 us of real time each, far less than Python
    # needs, so the sender is late all along; but each send is backdated to its due
    # time and one sender has no one to lose work to: the figures are the model's.
    run = processes.run(
        "-n",
        "50000",
        "--sender",
        "0.0001:0",
        "--distribution",
        "constant",
        "--speed",
        "1000",
        "--seed",
        "1",
        "--no-progress",
    ).finish()
    run.accounted()
    s = run.summary
    assert s["lag_s"] > 0.01 * s["sim_elapsed_s"]  # late, by the old rule NOT faithful
    assert s["sim_elapsed_s"] == pytest.approx(5.0, rel=0.01)  # the figure is still the model's
    assert s["model_check"]["sim_elapsed_s"] == pytest.approx(5.0, rel=1e-9)
    assert s["model_check"]["off"] == []
    assert s["faithful"] is True
    assert "model: faithful (every figure within 3% of the model's" in run.out


@pytest.mark.timeout(60)
def test_a_run_the_machine_cannot_follow_says_it_is_not_faithful(processes):
    # The emergency config at x5000: its 20-wide carriers and 3-second modem need
    # wake-ups every few microseconds; late senders lose work to others, and the figures move.
    run = processes.run("-c", str(EMERGENCY), "-n", "3000", "--speed", "5000", "--seed", "3", "--no-progress")
    run.finish()
    run.accounted()
    s = run.summary
    model = s["model_check"]
    assert abs(s["sim_elapsed_s"] / model["sim_elapsed_s"] - 1) > 0.03  # the drift moved the figure...
    assert s["faithful"] is False  # ...and the run says so
    assert model["off"][0].startswith("sim_elapsed ")
    assert "model: NOT faithful: sim_elapsed " in run.out
    assert "--speed max" in run.out


@pytest.mark.timeout(60)
def test_virtual_time_summary_has_the_same_keys_and_says_max(processes):
    settings = ("-n", "100", "--sender", "0.1:0.1", "--seed", "2", "--no-progress")
    virtual = processes.run(*settings, "--speed", "max", summary="v.json").finish()
    real = processes.run(*settings, "--speed", "50", summary="r.json").finish()
    virtual.accounted(), real.accounted()
    assert set(virtual.summary) == set(real.summary)
    assert virtual.summary["speed"] == "max"
    assert virtual.summary["mode"] == "virtual"
    assert virtual.summary["lag_s"] == 0.0
    assert virtual.summary["faithful"] is True
    assert set(virtual.summary["reach_s"]) == {"50", "90", "99", "100"}
    assert "Infinity" not in virtual.summary_path.read_text()


@pytest.mark.timeout(60)
def test_replications_keep_replication_one_at_the_top_and_aggregate_the_rest(processes):
    settings = (
        "-n",
        "2000",
        "--sender",
        "0.2:0.1:window=5",
        "--max-retries",
        "1",
        "--seed",
        "11",
        "--speed",
        "max",
        "--no-progress",
    )
    single = processes.run(*settings, summary="one.json").finish().summary
    many = processes.run(*settings, "--replications", "6", "--jobs", "2", summary="six.json").finish()
    s = many.summary
    assert many.status == 0
    assert s["sim_elapsed_s"] == single["sim_elapsed_s"]
    assert s["seed"] == 11
    assert [r["replication"] for r in s["replications"]] == [1, 2, 3, 4, 5, 6]
    assert "timeline" in s
    assert not any("timeline" in r for r in s["replications"])
    seeds = [r["seed"] for r in s["replications"]]
    assert seeds[0] == 11
    assert len(set(seeds)) == 6
    elapsed = [r["sim_elapsed_s"] for r in s["replications"]]
    agg = s["aggregate"]["sim_elapsed_s"]
    assert agg["n"] == 6
    assert agg["mean"] == pytest.approx(statistics.fmean(elapsed))
    assert agg["min"] == min(elapsed)
    assert agg["max"] == max(elapsed)
    assert agg["ci95"][0] < agg["mean"] < agg["ci95"][1]
    assert s["aggregate"]["reach_s.100"]["n"] <= 6
    assert "sim_elapsed_s" in many.out
    assert "95% [" in many.out


def test_a_replication_can_be_repeated_alone_from_its_recorded_seed(processes):
    settings = ("-n", "1000", "--sender", "0.3:0.2:window=3", "--speed", "max", "--no-progress")
    many = (
        processes.run(*settings, "--seed", "5", "--replications", "3", "--jobs", "1", summary="m.json").finish().summary
    )
    third = many["replications"][2]
    alone = processes.run(*settings, "--seed", str(third["seed"]), summary="a.json").finish().summary
    assert alone["sim_elapsed_s"] == third["sim_elapsed_s"]
    assert alone["sent"] == third["sent"]


@pytest.mark.timeout(60)
def test_a_list_from_standard_input_serves_every_replication(tmp_path):
    summary = tmp_path / "s.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smsbatch",
            "--recipients",
            "-",
            "--replications",
            "3",
            "--jobs",
            "2",
            "--speed",
            "max",
            "--sender",
            "0.1:0",
            "--no-progress",
            "--summary-json",
            str(summary),
        ],
        input="+12025550143\n+12025550144\n(202) 555-0143\n+12025550145\n",
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    s = json.loads(summary.read_text())
    assert s["duplicate_numbers"] == 1
    assert [(r["messages"], r["sent"]) for r in s["replications"]] == [(3, 3)] * 3


@pytest.mark.timeout(60)
def test_senders_that_never_wait_give_the_models_zero_and_are_faithful(processes):
    run = processes.run(
        "-n", "20000", "--sender", "0:0.1", "--sender", "0:0.1", "--seed", "2", "--no-progress"
    ).finish()
    run.accounted()
    s = run.summary
    assert s["sim_elapsed_s"] == 0.0
    assert s["reach_s"]["50"] == 0.0
    assert s["faithful"] is True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("to", ["the main process", "the process group"])
def test_ctrl_c_during_replications_stops_the_running_ones_warmly_and_counts_them(processes, to):
    """A terminal's Ctrl-C goes to the whole process group (was: counted twice in
    a running replication, a cold stop, and a replication queued in a pool
    process then ran in full)."""
    run = processes.run(
        "-c",
        "configs/emergency.ini",
        "-n",
        "2000",
        "--speed",
        "5",
        "--replications",
        "4",
        "--jobs",
        "2",
        "--seed",
        "1",
        "--no-progress",
    )
    run.wait_for_children(4, prefix="smsbatch: sender")  # replications under way
    (os.kill if to == "the main process" else os.killpg)(run.proc.pid, signal.SIGINT)
    run.finish()
    s = run.summary
    assert run.status == 130
    assert [r["replication"] for r in s["replications"]] in ([1], [2], [1, 2])  # 3 and 4 never start
    assert {r["stopped_by"] for r in s["replications"]} <= {"SIGTERM", "completed"}  # warm: one signal each
    assert "every message accounted for, in every replication: yes" in run.out
    assert s["replications"]  # the ones that ran are reported, stopped ones included
    for r in s["replications"]:
        assert r["sent"] + r["failed"] + r["unsent"] == r["messages"]
    # A stopped replication is reported as stopped, and left out of the aggregate, which says so.
    stopped = [r["replication"] for r in s["replications"] if r["stopped_by"] != "completed"]
    assert stopped  # the signal came while they ran
    included = len(s["replications"]) - len(stopped)
    assert s["aggregate"]["replications"] == {"included": included, "stopped": stopped}
    assert s["aggregate"]["sim_elapsed_s"]["n"] == included
    assert s["aggregate"]["met_deadline"]["n"] == included
    assert f"left out: {len(stopped)} replication" in run.out
