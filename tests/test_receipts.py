"""Delivery receipts (--dlr-median, --dlr-p90, --undeliverable, --receipt-loss).

Each figure against arithmetic, a distribution's own quantiles, or the other
engine (the lockstep real-time runner), never a run against itself.
"""

import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import refused

from smsbatch.cli import main, make_source
from smsbatch.config import parse_settings
from smsbatch.core.clock import FakeClock
from smsbatch.core.sender_model import SenderModel, account_caps
from smsbatch.present.monitor import Monitor, NullDisplay
from smsbatch.realtime.lockstep import LockstepBackend, drive
from smsbatch.realtime.runner import Runner
from smsbatch.virtual.engine import VirtualEngine


def engine(*args):
    settings = parse_settings(["--speed", "max", "--seed", "5", *args])
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    return settings, VirtualEngine(
        models, settings.messages, deadline=settings.deadline, accounts=account_caps(settings)
    )


def test_a_constant_delay_shifts_the_reach_by_itself():
    _, plain = engine("-n", "1000", "--sender", "1:0:window=10", "--distribution", "constant")
    _, late = engine("-n", "1000", "--sender", "1:0:window=10", "--distribution", "constant", "--dlr-median", "25")
    accepted, delivered = plain.run(), late.run()
    assert delivered.receipts is not None
    assert delivered.receipts.delivered == 1000
    for percent, when in accepted.reach.items():
        assert delivered.receipts.reach[percent] == when + 25.0


def test_shares_of_undeliverable_and_lost_receipts():
    n, u, lost = 20000, 0.05, 0.02
    _, run = engine("-n", str(n), "--sender", "0:0", "--undeliverable", str(u), "--receipt-loss", str(lost))
    figures = run.run().receipts
    assert figures.delivered + figures.undeliverable + figures.no_receipt == n
    for count, share in ((figures.undeliverable, u), (figures.no_receipt, lost), (figures.delivered, 1 - u - lost)):
        assert abs(count / n - share) < 4 * math.sqrt(share * (1 - share) / n)


def test_receipt_delays_have_the_median_and_p90_asked_for():
    settings = parse_settings(["--sender", "0:0", "--dlr-median", "15", "--dlr-p90", "60", "--seed", "2"])
    delays, _ = SenderModel(settings.senders[0], settings, 0).receipt_block(40000)
    assert np.quantile(delays, 0.5) == pytest.approx(15, rel=0.03)
    assert np.quantile(delays, 0.9) == pytest.approx(60, rel=0.03)


def test_the_deadline_counts_delivered_messages(tmp_path):
    argv = ["-n", "100", "--sender", "1:0:window=10", "--distribution", "constant", "--deadline", "10"]
    argv += ["--speed", "max", "--no-progress"]
    figures = {}
    for extra in ([], ["--dlr-median", "5"]):
        path = tmp_path / "s.json"
        main([*argv, *extra, "--summary-json", str(path)], stdout=io.StringIO())
        figures[bool(extra)] = json.loads(path.read_text())
    assert figures[False]["within_deadline"] == 1.0  # all accepted by 10 s
    assert figures[True]["within_deadline"] == 0.5  # accepted by 5 s: delivered by 10 s
    assert figures[False]["delivered_reach_s"] == figures[False]["reach_s"]  # not modelled: delivered at once
    assert figures[False]["delivered"] == figures[False]["sent"]
    assert figures[True]["receipts_modelled"] is True


def test_a_stopped_run_counts_the_receipts_still_due_as_pending():
    _, run = engine("-n", "50000", "--sender", "0.01:0.1:window=4", "--dlr-median", "30", "--max-retries", "1")
    outcome = run.run(tick=lambda progress: False)  # stopped at its first look (a chunk), as Ctrl-C does
    assert outcome.interrupted
    figures = outcome.receipts
    assert figures.pending > 0
    unsent = 50000 - outcome.sent - outcome.failed
    assert figures.delivered + figures.undeliverable + figures.no_receipt + figures.pending == outcome.sent
    assert figures.pending + figures.delivered + outcome.failed + unsent == 50000
    assert unsent > 0


@pytest.mark.timeout(60)
def test_the_real_time_runner_gets_the_same_receipts():
    argv = ["-n", "400", "--sender", "0.05:0.1:window=3", "--sender", "0.2:0.2:rate=8", "--max-retries", "1"]
    argv += ["--dlr-median", "10", "--dlr-p90", "40", "--undeliverable", "0.05", "--receipt-loss", "0.03"]
    settings = parse_settings([*argv, "--seed", "4"])
    _, virtual = engine(*argv, "--seed", "4")
    expected = virtual.run().receipts
    source, _ = make_source(settings)
    clock = FakeClock(0.0)
    backend = LockstepBackend(replace(settings, progress=False), source, clock)
    runner = Runner(settings, source, Monitor(NullDisplay(io.StringIO()), 1.0, clock), backend, clock, [])
    drive(runner, backend, clock)
    assert runner.finish().snapshot.receipts == expected


@pytest.mark.timeout(60)
def test_real_time_processes_give_the_models_delivered_figures(tmp_path, no_children_left):
    argv = ["-n", "500", "--sender", "0.02:0.05:window=4", "--sender", "0.05:0.1", "--seed", "6", "--no-progress"]
    argv += ["--dlr-median", "3", "--dlr-p90", "9", "--undeliverable", "0.04"]
    figures = {}
    for speed in ("max", "20"):
        path = tmp_path / f"{speed}.json"
        assert main([*argv, "--speed", speed, "--summary-json", str(path)], stdout=io.StringIO()) == 0
        figures[speed] = json.loads(path.read_text())
    virtual, real = figures["max"], figures["20"]
    assert real["faithful"] is True
    for key in ("delivered", "undeliverable", "no_receipt"):
        assert real[key] == pytest.approx(virtual[key], rel=0.03, abs=2)
    assert real["delivered_reach_s"]["50"] == pytest.approx(virtual["delivered_reach_s"]["50"], rel=0.03)
    for summary in (virtual, real):
        parts = ("delivered", "undeliverable", "no_receipt", "receipt_pending", "failed", "unsent")
        assert sum(summary[key] for key in parts) == 500


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--dlr-median", "-1"], "argument --dlr-median: must be a number"),
        (["--dlr-median", "nan"], "argument --dlr-median: must be a number"),
        (["--dlr-median", "20", "--dlr-p90", "10"], "argument --dlr-p90: must be at least the median"),
        (["--undeliverable", "1.5"], "argument --undeliverable: must be a number"),
        (["--undeliverable", "0.6", "--receipt-loss", "0.5"], "the two shares must sum to at most 1"),
        (["--sender", "0:0:dlr-median=5:dlr-p90=3"], "dlr-p90: must be at least the median"),
    ],
)
def test_bad_receipt_options_are_one_line(argv, says, tmp_path):
    refused(argv, says, tmp_path)
