"""smsbatch plan, smsbatch compare and --replications auto, each checked
against an answer worked out here independently: capacity arithmetic for
senders of constant send times, closed forms for the statistics, the
half-widths recomputed from the replications the summary lists."""

from __future__ import annotations

import io
import json
import math
import statistics

import pytest

from smsbatch.cli import main
from smsbatch.core.inference import (
    Z975,
    correlation,
    feasibility,
    fewest_to_show,
    half_width,
    independent_difference,
    paired_difference,
    precise,
    t975,
)
from smsbatch.core.stats import wilson

# One sender B of constant 1 s sends, 5 in flight, no failures: 5 messages end at each whole second.
CONSTANT = ["--sender", "1:0:distribution=constant:window=5:name=B", "--deadline", "9.5", "--no-progress"]


def run(argv, tmp_path, name="out.json"):
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / name
    status = main([*argv, "--summary-json", str(path)], stdout=out, stderr=err)
    summary = json.loads(path.read_text()) if path.exists() else None
    return status, summary, out.getvalue(), err.getvalue()


def refused(argv, says, tmp_path):
    status, summary, out, err = run(argv, tmp_path)
    assert status == 2, err
    assert says in err, err
    assert len(err.splitlines()) == 1
    assert summary is None
    assert out == ""


# ---- the statistics, against closed forms ----


def test_t_quantiles_match_the_tables_beyond_thirty_degrees_of_freedom():
    assert t975(10) == 2.228
    for df, table in ((40, 2.021), (60, 2.000), (120, 1.980), (1000, 1.962)):
        assert t975(df) == pytest.approx(table, abs=1e-3)
    assert t975(10**9) == pytest.approx(Z975)


def test_the_paired_and_the_welch_interval_are_the_closed_forms():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    welch = independent_difference(a, b)  # var 1 each, n 3: se sqrt(2/3), df 4, t 2.776
    assert welch.mean == 3.0
    assert welch.half == pytest.approx(2.776 * math.sqrt(2 / 3))
    paired = paired_difference([1.0, 2.0, 4.0], [2.0, 4.0, 5.0])  # differences 1, 2, 1: sd 0.577
    assert paired.mean == pytest.approx(4 / 3)
    assert paired.half == pytest.approx(4.303 * statistics.stdev([1, 2, 1]) / math.sqrt(3))
    same = paired_difference([3.0, 5.0, 7.0], [3.0, 5.0, 7.0])
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    # deviations -1, 0, 1 and -13/6, -1/6, 14/6: r = 4.5 / sqrt(2 * 61 / 6)
    assert correlation([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) == pytest.approx(4.5 / math.sqrt(61 / 3))


def test_feasibility_is_the_wilson_bounds_against_the_probability():
    # n of n shows P once n / (n + z^2) >= P: n >= P z^2 / (1 - P), 73 for 0.95.
    assert fewest_to_show(0.95) == math.ceil(0.95 * Z975**2 / 0.05)
    assert feasibility(73, 73, 0.95) == "feasible"
    assert feasibility(72, 72, 0.95) is None
    assert feasibility(0, 1, 0.95) == "infeasible"  # upper bound z^2 / (1 + z^2) = 79.3%
    assert feasibility(90, 100, 0.95) == ("infeasible" if wilson(90, 100)[1] < 0.95 else None)


def test_precise_asks_for_the_minimum_and_the_half_width():
    values = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 10.2, 9.8, 10.1, 9.9]
    assert not precise(values[:9], 0.5)  # fewer than 10
    assert precise(values, 0.01) == (half_width(values) <= 0.01 * statistics.fmean(values))
    assert not precise(values, 0.001)


# ---- plan ----


def needed_copies(messages: int, share: float, deadline: float, window: int, mean: float) -> int:
    """Constant sends: c copies end c * window messages each `mean` seconds."""
    return next(c for c in range(1, 100) if math.ceil(share * messages / (c * window)) * mean <= deadline)


@pytest.mark.timeout(60)
def test_plan_finds_the_copies_capacity_arithmetic_says(tmp_path):
    expected = needed_copies(200, 0.9, 9.5, 5, 1.0)
    assert expected == 4
    report = tmp_path / "plan.html"
    argv = ["plan", "-n", "200", *CONSTANT, "--vary", "B.copies=1..12", "--seed", "1", "--report", str(report)]
    status, s, out, _ = run(argv, tmp_path)
    assert status == 0
    plan = s["plan"]
    assert plan["answer"] == expected
    assert out.splitlines()[1].startswith(f"B.copies = {expected}, {expected - 1} more than the config has: ")
    verdicts = {c["value"]: c["verdict"] for c in plan["candidates"]}
    assert verdicts[expected] == "feasible"
    assert verdicts[expected - 1] == "infeasible"
    assert all((v == "feasible") == (value >= expected) for value, v in verdicts.items())
    for c in plan["candidates"]:
        assert c["met_ci95"] == list(wilson(c["met"], c["replications"]))
    assert plan["candidates"] == sorted(plan["candidates"], key=lambda c: c["value"])
    assert [c["replications"] for c in plan["candidates"] if c["value"] == expected] == [fewest_to_show(0.95)]
    assert len(s["senders"]) == expected  # the summary is the answer's replication 1
    assert s["met_deadline"] is True
    page = report.read_text()  # the search drawn above the answer's run: a dot and a Wilson bar per candidate
    assert '<section id="plan">' in page
    assert f"B.copies = {expected}: the smallest value" in page
    assert page.count("<circle ") == len(plan["candidates"])


@pytest.mark.timeout(60)
def test_plan_brackets_and_bisects_the_largest_message_count(tmp_path):
    # 5 messages a second: 45 by 9 s, so 90% by 9.5 s holds for N <= 50.
    status, s, out, _ = run(["plan", *CONSTANT, "--vary", "messages=10..400", "--seed", "2"], tmp_path)
    assert status == 0
    assert s["plan"]["answer"] == 50
    values = {c["value"]: c["verdict"] for c in s["plan"]["candidates"]}
    assert values[50] == "feasible"
    assert values[51] == "infeasible"
    assert len(values) <= 6  # started from the arithmetic, not a sweep
    assert "messages = 50 (the config has 1,000)" in out


@pytest.mark.timeout(60)
def test_a_plan_with_no_feasible_value_exits_3_and_says_which_end_to_move(tmp_path):
    status, s, out, _ = run(["plan", "-n", "200", *CONSTANT, "--vary", "B.copies=1..2", "--seed", "1"], tmp_path)
    assert status == 3
    assert s["plan"]["answer"] is None
    assert "no value of B.copies in 1..2 is feasible" in out
    assert "raise HI" in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--vary", "X.copies=1..3"], "argument --vary: X.copies: no sender is named 'X' (the senders are B)"),
        (["--vary", "B.mean=1..3"], "argument --vary: KNOB must be NAME.copies"),
        (["--vary", "B.window=9..3"], "LO must be at most HI"),
        (["--vary", "B.window=0..3"], "B.window: LO and HI must be a whole number from 1 to"),
        (["--vary", "B.rate=0.000001..1000000"], "a range of at most 1,000,000 values can be searched"),
        (["--vary", "B.copies"], "argument --vary: must be KNOB=LO..HI"),
        (["--vary", "B.copies=1..3", "--speed", "10"], "argument --speed: smsbatch plan runs in virtual time only"),
        (["--vary", "B.copies=1..3", "--probability", "1"], "argument --probability: must be a number above 0"),
        (["--vary", "B.copies=1..3", "--max-replications", "50"], "it needs at least 73"),
        (["--vary", "B.copies=1..3", "--timeline", "t.csv"], "argument --timeline: not with smsbatch plan"),
        ([], "the following arguments are required: --vary"),
    ],
)
def test_plan_bad_input_is_one_line_and_exit_2(argv, says, tmp_path):
    refused(["plan", "-n", "20", *CONSTANT, *argv], says, tmp_path)


@pytest.mark.timeout(60)
def test_a_plan_over_a_gateway_cap_agrees_with_single_runs_either_side(tmp_path):
    sender = ["--sender", "0.1:0:distribution=constant:window=10:name=B:cap=5", "--deadline", "9.5", "--no-progress"]
    status, s, _, _ = run(["plan", "-n", "200", *sender, "--vary", "B.cap=1..100", "--seed", "1"], tmp_path)
    assert status == 0
    answer = s["plan"]["answer"]
    for cap, meets in ((answer, True), (answer - 1, False)):  # constant sends: every replication alike
        spec = f"0.1:0:distribution=constant:window=10:name=B:cap={cap}"
        one = ["-n", "200", "--sender", spec, "--deadline", "9.5", "--speed", "max", "--seed", "1", "--no-progress"]
        _, alone, _, _ = run(one, tmp_path, f"cap{cap}.json")
        assert alone["met_deadline"] is meets, cap


# ---- compare ----


def configs(tmp_path, b_mean: float = 1.03):
    line = "sender = [0.5:0.05:name=A:window=4, {}:0.1:name=B:window=3]\nmax-retries = 1\nmessages = 300\n"
    a, b = tmp_path / "a.ini", tmp_path / "b.ini"
    a.write_text(line.format(1))
    b.write_text(line.format(b_mean))
    return str(a), str(b)


@pytest.mark.timeout(60)
def test_compare_pairs_tell_apart_what_independent_intervals_cannot(tmp_path):
    a, b = configs(tmp_path)  # b's second sender is 3% slower
    common = ["--seed", "1", "--replications", "20", "--no-progress"]
    status, s, out, _ = run(["compare", a, b, *common], tmp_path)
    assert status == 0
    c = s["compare"]
    assert c["common_random_numbers"] is True
    assert c["replications"] == 20
    low, high = c["metrics"]["delivered_reach_s.90"]["difference"]["ci95"]
    assert 0 < low < high  # b is later, and the pairs show it
    assert "delivers 90%" in out
    assert ": a real difference" in out
    assert "common random numbers" in out.splitlines()[0]
    # The same configs run alone: their own 95% intervals of the 90% time overlap.
    _, sa, _, _ = run(["-c", a, "--speed", "max", *common], tmp_path, "a.json")
    _, sb, _, _ = run(["-c", b, "--speed", "max", *common], tmp_path, "b.json")
    (a_low, a_high), (b_low, b_high) = sa["aggregate"]["reach_s.90"]["ci95"], sb["aggregate"]["reach_s.90"]["ci95"]
    assert a_low < b_high  # the two intervals overlap
    assert b_low < a_high
    assert c["metrics"]["delivered_reach_s.90"]["a_mean"] == pytest.approx(sa["aggregate"]["reach_s.90"]["mean"])
    assert c["metrics"]["delivered_reach_s.90"]["correlation"] > 0.9


@pytest.mark.timeout(60)
def test_compare_of_a_config_with_itself_is_exactly_zero(tmp_path):
    a, _ = configs(tmp_path)
    report = tmp_path / "compare.html"
    status, s, out, _ = run(["compare", a, a, "--seed", "4", "--replications", "10", "--report", str(report)], tmp_path)
    assert status == 0
    assert '<section id="compare">' in report.read_text()
    assert s["seed"] == 4  # the summary is a's replication 1, whole
    assert s["sent"] + s["failed"] + s["unsent"] == s["messages"] == 300
    for key, metric in s["compare"]["metrics"].items():
        assert metric["difference"] == {"mean": 0.0, "ci95": [0.0, 0.0]}, key
    assert "no difference" in out


@pytest.mark.timeout(60)
def test_compare_with_an_override_and_independent_seeds(tmp_path):
    a, _ = configs(tmp_path)
    argv = ["compare", a, "--with", "max-retries=0", "--independent", "--seed", "1", "--replications", "12"]
    status, s, out, _ = run(argv, tmp_path)
    assert status == 0
    assert s["compare"]["common_random_numbers"] is False
    assert s["compare"]["b"] == f"{a} with max-retries=0"
    assert s["compare"]["metrics"]["within_deadline"]["difference"]["mean"] <= 0  # no retries: fewer sent
    assert "independent seeds" in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "smsbatch compare: error: give two configs"),
        (["A"], "give a second config, or --with KEY=VALUE"),
        (["A", "--with", "nosuch=1"], "argument --with: 'nosuch' is not an option of a run"),
        (["A", "A", "--with", "max-retries=0"], "not with two configs"),
        (["A", "A", "--precision", "0"], "argument --precision: must be a number above 0 and below 1"),
    ],
)
def test_compare_bad_input_is_one_line_and_exit_2(argv, says, tmp_path):
    a, _ = configs(tmp_path)
    refused(["compare", *[a if word == "A" else word for word in argv]], says, tmp_path)


# ---- --replications auto ----


@pytest.mark.timeout(60)
def test_auto_stops_at_the_first_replication_precise_enough(tmp_path):
    argv = ["-n", "100", "--sender", "0.3:0.02:window=3", "--speed", "max", "--seed", "3", "--no-progress"]
    status, s, out, _ = run([*argv, "--replications", "auto", "--precision", "0.02", "--jobs", "2"], tmp_path)
    assert status == 0
    auto = s["auto_replications"]
    assert auto["stopped_because"] == "precise"
    assert auto["figure"] == "delivered_reach_s.90"
    times = [r["delivered_reach_s"]["90"] for r in s["replications"]]
    n = len(times)
    assert n == auto["replications"] > 10  # this precision takes more than the minimum
    assert half_width(times) <= 0.02 * statistics.fmean(times)
    assert auto["half_width"] == pytest.approx(half_width(times))
    assert half_width(times[:-1]) > 0.02 * statistics.fmean(times[:-1])  # one fewer was not enough
    assert f"replications auto: {n} run;" in out
    assert "within --precision 2.00%" in out


@pytest.mark.timeout(60)
def test_ctrl_c_stops_a_plan_with_what_it_probed(processes):
    import os
    import signal

    plan = ["plan", "-n", "20000", "--sender", "0.5:0.05:name=A:window=4", "--vary", "A.copies=1..50", "--seed", "1"]
    run = processes.run(*plan)
    run.wait_for_children(1, prefix="smsbatch: replications")  # the pool is at work on the first candidate
    run.wait_for_line(r"^smsbatch plan: ", stream="out")
    os.kill(run.proc.pid, signal.SIGINT)
    run.finish()
    assert run.status == 130
    assert "Traceback" not in run.err
    assert "plan stopped before it had an answer" in run.out
    plan_facts = run.summary["plan"]
    assert plan_facts["answer"] is None
    verdicts = [c["verdict"] for c in plan_facts["candidates"]]
    assert verdicts.count("stopped") == 1  # the one it cut short; any before it were judged
    assert set(verdicts) <= {"stopped", "feasible", "infeasible"}


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "configs/emergency.ini", "-n", "3000"],  # the fast path
        ["-c", "configs/gateways.ini", "-n", "3000"],  # the loop: accounts, receipts, an outage, a backup
    ],
)
def test_a_brief_replication_counts_no_bins_and_has_the_full_ones_figures(argv, monkeypatch):
    """A plan's replications keep no timeline, so they count no bins; every
    figure they keep is the full run's, to the bit."""
    from dataclasses import replace

    from smsbatch import replications
    from smsbatch.assembly import source_for
    from smsbatch.config import parse_settings
    from smsbatch.core import timeline

    settings = parse_settings([*argv, "--speed", "max", "--seed", "5", "--no-progress"])
    monkeypatch.setattr(replications, "_SOURCE", source_for(settings, settings.messages))
    full = replications.run_one(settings, 3)
    binned = []
    monkeypatch.setattr(timeline.Timeline, "add_bin", lambda *a, **k: binned.append(1))
    brief = replications.run_one(replace(settings), 3, brief=True)
    assert not binned
    assert "timeline" in full
    assert set(brief) == set(full) - set(replications.BRIEF_DROPS)
    real_seconds = ("elapsed_s", "startup_s")
    assert {k: v for k, v in brief.items() if k not in real_seconds} == {
        k: full[k] for k in brief if k not in real_seconds
    }


def test_an_answer_at_the_lowest_value_a_knob_can_take_does_not_ask_to_lower_lo(tmp_path):
    argv = ["plan", "-n", "200", "--sender", "0.1:0:window=5:name=B", "--deadline", "100", "--seed", "1"]
    status, _, out, _ = run([*argv, "--vary", "B.copies=1..5", "--no-progress"], tmp_path)
    assert status == 0
    assert "(the lowest value searched, the lowest it can be)" in out
    status, _, out, _ = run([*argv, "--vary", "B.copies=2..5", "--no-progress"], tmp_path)
    assert "(the lowest value searched: lower LO to look further)" in out
