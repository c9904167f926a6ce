"""Honest intervals: shares inside [0, 1], counts and times never below 0, and
the share of replications that met the deadline with a Wilson interval."""

import io
import json
import math

import pytest

from smsbatch.cli import main
from smsbatch.core.stats import wilson
from smsbatch.replications import describe


def test_wilson_at_the_edges_is_the_closed_form():
    z2 = 1.959963984540054**2
    low, high = wilson(0, 20)
    assert low == 0.0
    assert high == pytest.approx(z2 / (20 + z2))  # k = 0: the upper end is z^2 / (n + z^2)
    low, high = wilson(97, 97)
    assert high == 1.0
    assert low == pytest.approx(97 / (97 + z2))  # and k = n: the lower end is n / (n + z^2)
    assert round(low, 3) == 0.962  # "97 of 97 replications ..., Wilson 95% [96.2%, 100%]"


def test_wilson_in_the_middle_matches_a_textbook_value():
    low, high = wilson(8, 10)  # Newcombe (1998), 8 of 10: [0.490, 0.943]
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)


def test_a_share_near_one_and_a_count_near_zero_stay_where_they_can_be():
    share = describe([1.0, 1.0, 1.0, 0.8], (0.0, 1.0))
    assert share["ci95"][1] == 1.0
    assert share["ci95"][0] < share["mean"]
    count = describe([0, 0, 0, 3])
    assert count["ci95"][0] == 0.0
    assert math.isclose(count["mean"], 0.75)


def test_replications_report_the_met_share_with_its_wilson_interval(tmp_path):
    path = tmp_path / "s.json"
    out = io.StringIO()
    argv = ["-n", "300", "--sender", "0.3:0.4", "--sender", "1:0.3", "--replications", "12", "--speed", "max"]
    assert (
        main([*argv, "--seed", "2", "--deadline", "60", "--no-progress", "--summary-json", str(path)], stdout=out) == 0
    )
    agg = json.loads(path.read_text())["aggregate"]
    met = sum(1 for run in json.loads(path.read_text())["replications"] if run["met_deadline"])
    assert agg["met_deadline"] == {"met": met, "n": 12, "ci95": list(wilson(met, 12))}
    assert 0.0 <= agg["within_deadline"]["ci95"][0] <= agg["within_deadline"]["ci95"][1] <= 1.0
    assert agg["failed"]["ci95"][0] >= 0.0
    assert f"met by {met} of 12 replications, Wilson 95% [" in out.getvalue()


def test_real_time_replications_that_were_not_faithful_say_so_in_the_text(tmp_path):
    from smsbatch.config import parse_settings
    from smsbatch.replications import _report

    path = tmp_path / "s.json"
    argv = ["-n", "50", "--sender", "0.3:0.1", "--replications", "3", "--speed", "max", "--seed", "1"]
    assert main([*argv, "--no-progress", "--summary-json", str(path)], stdout=io.StringIO()) == 0
    runs = json.loads(path.read_text())["replications"]
    for run in runs[1:]:  # as a real-time run that fell behind the model would say
        run.update(mode="real-time", faithful=False)
    out = io.StringIO()
    _report(parse_settings(argv), runs, out, [])
    assert "NOT faithful to the model: 2 replications (2, 3)" in out.getvalue()
    out = io.StringIO()
    _report(parse_settings(argv), runs[:1], out, [])
    assert "faithful" not in out.getvalue()
