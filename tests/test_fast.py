"""The fast path of virtual time (virtual/fast.py) against the event loop, bit for bit.

Each case runs the same settings and seed twice through VirtualEngine: the
event loop alone (vectorise=False, the definition) and the fast path where the
model allows it, with a timeline; the Outcome (counts, reach times, every
sender's Stats to the last float, the capped time) and the timeline's every
row must be equal. And the choice is the model's: anything the fast path was
not written for takes the loop.
"""

import dataclasses
import math

import numpy as np
import pytest

from smsbatch.config import Settings, parse_account, parse_sender, parse_settings
from smsbatch.core import sender_model
from smsbatch.core.sender_model import RunOutages, SenderModel, account_caps, fast_path
from smsbatch.core.timeline import Timeline, first_width
from smsbatch.virtual import engine as engine_module
from smsbatch.virtual import fast as fast_module
from smsbatch.virtual.engine import VirtualEngine


def settings_of(specs, messages, accounts=(), **kwargs):
    senders = tuple(parse_sender(s) for s in specs)
    return Settings(messages=messages, senders=senders, accounts=tuple(parse_account(a) for a in accounts), **kwargs)


def outcome(settings, vectorise, width=None, tick=None):
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    timeline = Timeline([s.name for s in settings.senders], width or first_width(settings, settings.messages))
    engine = VirtualEngine(
        models,
        settings.messages,
        timeline,
        settings.deadline,
        accounts=account_caps(settings),
        outages=RunOutages(settings),
        vectorise=vectorise,
    )
    result = engine.run(tick)
    return result, timeline.as_dict(result.sim_elapsed), models


EMERGENCY = ["0.2:0.02:window=20", "0.5:0.05:window=20:rate=25", "1.5:0.12:window=40", "3:0.1"]
FOUR = ["0.3:0.03:window=10", "0.8:0.06:window=30:rate=20", "2:0.1:window=50", "5:0.2"]
CASES = {
    # name: (senders, messages, settings, seeds)
    "one message": (["0.2:0.1:window=3"], 1, {}, (1,)),
    "fewer messages than slots": (["0.2:0.1:window=30", "0.5:0:rate=4:window=3"], 20, {"max_retries": 1}, (1, 2)),
    "one slot, three messages": (["0.1:0"], 3, {}, (5, 2555317615)),
    "just more than the slots": (["0.2:0.1:window=30", "0.5:0.1"], 40, {"max_retries": 2}, (1, 2, 3)),
    "emergency": (EMERGENCY, 20_000, {"max_retries": 2, "retry_backoff": 2.0, "deadline": 100.0}, (1, 2)),
    "emergency, large": (EMERGENCY, 100_000, {"max_retries": 2, "retry_backoff": 2.0}, (4,)),
    "four senders": (FOUR, 30_000, {"max_retries": 1}, (1,)),
    "constant times: ties everywhere": (
        ["1:0.1:window=10", "1:0.2:window=4:rate=4", "2:0"],
        3000,
        {"distribution": "constant", "max_retries": 2},
        (1, 2),
    ),
    "a cap as long as a send": (["1:0.2:window=2:rate=1"], 500, {"distribution": "constant", "max_retries": 1}, (1,)),
    "a cap that rarely binds": (["0.5:0.1:window=3:rate=100", "0.05:0.1:window=2"], 5000, {"max_retries": 1}, (1, 2)),
    "exponential, no retries": (
        ["0.1:0.3:window=7", "0.3:0.5:rate=5:window=4"],
        8000,
        {"distribution": "exponential"},
        (1, 2),
    ),
    "normal and uniform": (
        ["0.2:0.1:window=5:distribution=normal:spread=0.4", "0.4:0.2:window=3:distribution=uniform:spread=0.5"],
        6000,
        {"max_retries": 3, "retry_backoff": 0.3},
        (1, 2),
    ),
    "zero backoff": (
        ["0.1:0.3:window=4", "0.2:0.2:rate=8:window=2"],
        4000,
        {"max_retries": 2, "retry_backoff": 0.0},
        (1,),
    ),
    "segments": (
        ["0.05:0.05:window=6", "0.1:0.1:window=3:rate=30"],
        5000,
        {"text": "x" * 400, "max_retries": 1},
        (1, 2),
    ),
    "a wide window": (["0.2:0.2:window=300", "1:0.1:rate=50:window=80"], 20_000, {"max_retries": 1}, (1,)),
    "one slot each, retries": (["0.05:0.2", "0.1:0.1", "0.3:0.4:rate=2"], 3000, {"max_retries": 2}, (1, 2)),
    "an account of one sender, tighter than its own cap": (
        ["0.2:0.1:window=8:account=a:rate=50", "0.3:0.05:window=4"],
        6000,
        {"accounts": ["a:rate=20"], "max_retries": 2},
        (1, 2),
    ),
    "an account of one sender, looser than its own cap": (
        ["0.2:0.1:window=8:account=a:rate=10", "0.3:0.05:window=4:rate=5"],
        6000,
        {"accounts": ["a:rate=30"], "max_retries": 1},
        (1,),
    ),
    "two senders of an account, as configs/gateways.ini": (
        ["0.2:0.01:window=4:account=a", "0.2:0.01:window=4:account=a", "0.1:0.02:window=50:account=b"],
        20_000,
        {"accounts": ["a:rate=30", "b:rate=100"], "text": "z" * 200, "max_retries": 2, "retry_backoff": 5.0},
        (1, 2),
    ),
    "three senders of an account, one between them not of it, own caps looser": (
        ["0.3:0.1:window=3:account=a", "0.2:0.1:window=5", "0.5:0.2:window=6:account=a:rate=40", "1:0.1:account=a"],
        8000,
        {"accounts": ["a:rate=12"], "max_retries": 2, "retry_backoff": 1.0},
        (1, 2, 3),
    ),
    "an account that rarely binds": (
        ["0.5:0.1:window=2:account=a", "0.4:0.1:window=3:account=a"],
        5000,
        {"accounts": ["a:rate=30"], "max_retries": 1},
        (1, 2),
    ),
    "an account, constant times: ties everywhere": (
        ["1:0.1:window=4:account=a", "1:0.2:window=4:account=a", "2:0.1:window=2"],
        3000,
        {"accounts": ["a:rate=5"], "distribution": "constant", "max_retries": 2},
        (1, 2),
    ),
    "configs/gateways.ini, smaller": (
        [
            "0.2:0.01:window=4:account=a",
            "0.2:0.01:window=4:account=a",
            "0.1:0.02:window=50:account=b:down=3m+2m",
            "0.5:0.05:window=10:rate=10:backup",
        ],
        20_000,
        {
            "accounts": ["a:rate=30", "b:rate=100"],
            "text": "z" * 200,
            "max_retries": 2,
            "retry_backoff": 5.0,
            "dlr_median": 15.0,
            "dlr_p90": 60.0,
            "undeliverable": 0.03,
            "validity": 3600.0,
            "deadline": 600.0,
        },
        (1, 2),
    ),
    "outages: two on one sender, one on another, and --validity in the run": (
        ["0.2:0.1:window=10:rate=30:down=20+5:down=60+10", "0.3:0.05:window=6:rate=15:down=40+3", "0.5:0.1:window=4"],
        6000,
        {"max_retries": 2, "retry_backoff": 1.0, "validity": 150.0},
        (1, 2, 3),
    ),
    "random outages (mtbf)": (
        ["0.1:0.1:window=8:rate=40:mtbf=30:mttr=4", "0.4:0.05:window=5"],
        8000,
        {"max_retries": 1, "dlr_median": 5.0, "dlr_p90": 20.0},
        (1, 2),
    ),
    "a backup that takes over while every other route is down": (
        [
            "0.2:0.05:window=5:rate=20:down=30+20",
            "0.3:0.1:window=4:rate=10:backup",
            "0.1:0.1:window=3:rate=8:down=25+30",
        ],
        4000,
        {"max_retries": 2, "retry_backoff": 2.0},
        (1, 2),
    ),
    "--validity ends it before the queue is empty": (
        ["0.2:0.1:window=5", "0.5:0.2:window=3:rate=4"],
        5000,
        {"max_retries": 3, "validity": 60.0, "dlr_median": 10.0, "dlr_p90": 40.0},
        (1,),
    ),
    "receipts": (
        EMERGENCY,
        20_000,
        {"max_retries": 2, "dlr_median": 15.0, "dlr_p90": 60.0, "undeliverable": 0.03, "receipt_loss": 0.01},
        (1, 2),
    ),
    "receipts of a constant delay, a sender's own": (
        ["0.2:0.1:window=5:dlr-median=3:dlr-p90=3", "0.5:0.05:window=3:rate=4"],
        4000,
        {"max_retries": 1, "dlr_median": 1.0, "dlr_p90": 9.0, "deadline": 300.0},
        (1,),
    ),
    "receipts at once (only undeliverable given)": (FOUR, 8000, {"undeliverable": 0.2, "max_retries": 1}, (1, 2)),
    "receipts, constant times: ties everywhere": (
        ["1:0.1:window=10", "1:0.2:window=4:rate=4"],
        3000,
        {"distribution": "constant", "max_retries": 2, "dlr_median": 2.0, "dlr_p90": 2.0},
        (1,),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_fast_path_runs_the_loops_run(case):
    specs, messages, extra, seeds = CASES[case]
    for seed in seeds:
        settings = settings_of(specs, messages, seed=seed, **extra)
        loop, loop_timeline, _ = outcome(settings, vectorise=False)
        fast, fast_timeline, models = outcome(settings, vectorise=True)
        assert fast_path(models, trace=False)
        assert fast == loop, (case, seed)
        assert fast_timeline == loop_timeline, (case, seed)
        assert fast.sent + fast.failed + fast.expired == messages


@pytest.mark.parametrize("case", ["emergency", "configs/gateways.ini, smaller", "random outages (mtbf)", "receipts"])
def test_lanes_handed_to_the_loop_a_row_at_a_time(case, monkeypatch):
    """The fast path hands the loop each lane's lists only a few rows past
    where it is (engine.LISTED), the loop extending them as it goes: with one
    row at a time, every row the loop takes after a hand-over is one such
    extension, and the run is still the loop's alone."""
    monkeypatch.setattr(engine_module, "LISTED", 1)
    specs, messages, extra, seeds = CASES[case]
    settings = settings_of(specs, messages, seed=seeds[0], **extra)
    extended = []
    refill = engine_module._Lane.refill

    def counted(lane, row, times, failed):
        extended.append(row < len(lane.times))
        return refill(lane, row, times, failed)

    monkeypatch.setattr(engine_module._Lane, "refill", counted)
    fast = outcome(settings, vectorise=True)[:2]
    assert any(extended)
    assert fast == outcome(settings, vectorise=False)[:2]


def test_a_timeline_that_coarsens_in_the_fast_path():
    settings = settings_of(EMERGENCY, 20_000, seed=5, max_retries=1)
    width = first_width(settings, settings.messages) / 9  # several doublings along the way
    loop, loop_timeline, _ = outcome(settings, vectorise=False, width=width)
    fast, fast_timeline, _ = outcome(settings, vectorise=True, width=width)
    assert (fast, fast_timeline) == (loop, loop_timeline)


def test_receipts_with_a_timeline_that_coarsens():
    """Deliveries are counted into the timeline between its bins' closes: the
    width doubles at the same finish on both paths, and every count lands alike."""
    settings = settings_of(EMERGENCY, 20_000, seed=3, max_retries=1, dlr_median=20.0, dlr_p90=200.0)
    width = first_width(settings, settings.messages) / 9
    loop, loop_timeline, _ = outcome(settings, vectorise=False, width=width)
    fast, fast_timeline, _ = outcome(settings, vectorise=True, width=width)
    assert loop.receipts is not None
    assert loop.receipts.delivered > 0
    assert (fast, fast_timeline) == (loop, loop_timeline)


def test_a_delivery_counted_where_the_timeline_doubles_its_width():
    """(Found by comparing random settings.) A bin closes at a finish before the
    receipts due by it are counted; counted first, a delivery past the last bin
    doubled the width before the close, which the fast path did not."""
    argv = ["-n", "1000", "--sender", "0.5:0.1:window=30:account=a:mtbf=20:mttr=2:dlr-median=1:dlr-p90=5"]
    argv += ["--distribution", "normal", "--account", "a:rate=10", "--undeliverable", "0.05", "--text", "q" * 400]
    settings = parse_settings([*argv, "--seed", "327"])
    loop, loop_timeline, _ = outcome(settings, vectorise=False, width=0.017166666666666667)
    fast, fast_timeline, _ = outcome(settings, vectorise=True, width=0.017166666666666667)
    assert (fast, fast_timeline) == (loop, loop_timeline)


@pytest.mark.timeout(60)
def test_a_bin_edge_that_rounds_down_to_a_finish():
    """(Found so too.) floor(t / width) a whole number short: the edge after a
    close is that finish's own time, so the next finish closes the next bin; the
    fast path looked for it at the same finish for ever."""
    argv = ["-n", "3000", "--sender", "0.05:0.3:window=1:account=a", "--sender", "0.2:0.1:window=30:rate=100"]
    settings = parse_settings([*argv, "--distribution", "constant", "--account", "a:rate=30", "--seed", "571"])
    assert outcome(settings, vectorise=True, width=0.0252)[:2] == outcome(settings, vectorise=False, width=0.0252)[:2]


def test_bins_that_close_at_one_time():
    """An edge that rounds down to a close's own time (17.0 / 0.017 is 999.99...)
    where ten sends end at once: each of them closes a bin in the loop, one after
    another; the fast path counts them by time, at once, into the same bin."""
    argv = ["-n", "2000", "--sender", "1:0:window=10", "--sender", "0.5:0.2:window=3:rate=4"]
    settings = parse_settings([*argv, "--distribution", "constant", "--seed", "3"])
    for width in (0.017, 0.034):
        assert outcome(settings, vectorise=True, width=width)[:2] == outcome(settings, vectorise=False, width=width)[:2]


def test_closes_on_the_grid_are_those_found_in_time_order():
    """The bins' closes found without a sort (fast.closes_on_grid) are those
    found finish by finish in time order (fast.closes_in_order, the loop's
    way), wherever the grid gives them: finishes on edges, next to them, tied,
    in empty bins; and where an edge rounds down to a finish (17.0 / 0.017 is
    999.99...), the grid gives none, and the ordered way is taken."""
    rng = np.random.default_rng(11)
    given = 0
    for trial in range(400):
        width = float(rng.choice([1.0, 0.1, 0.017, 2.5, 1 / 3]))
        n = int(rng.integers(1, 300))
        edge = int(rng.integers(1, 50)) * width
        ft = edge + rng.exponential(width * float(rng.choice([0.05, 1.0, 20.0])), n) - width * rng.random()
        on_edges = (np.floor(ft / width) + rng.integers(0, 2, n)) * width  # on the grid, and an ulp either side
        ft = np.where(rng.random(n) < 0.3, np.nextafter(on_edges, on_edges + rng.choice([-1, 0, 1], n)), ft)
        ft = np.where(rng.random(n) < 0.2, ft[rng.integers(0, n, n)], ft)  # ties
        ft = np.maximum(ft, 0.0)
        now_before = float(ft.min()) * 0.5
        grid = fast_module.closes_on_grid(ft, width, edge, now_before)
        if grid is None:
            continue
        given += 1
        times, nows, interval = fast_module.closes_in_order(ft, width, edge, now_before)
        assert (grid[0].tolist(), grid[1], grid[2].tolist()) == (times.tolist(), nows, interval.tolist()), trial
    assert given > 300
    tied = np.full(10, 17.0)  # ten sends end at once where an edge rounds down to them
    assert fast_module.closes_on_grid(tied, 0.017, 17.0, 16.9) is None
    assert len(fast_module.closes_in_order(tied, 0.017, 17.0, 16.9)[1]) == 10


def test_receipts_of_a_run_stopped_in_the_fast_path_are_pending_alike():
    settings = settings_of(EMERGENCY, 20_000, seed=4, dlr_median=30.0, dlr_p90=90.0)

    def stop_at(limit):
        def tick(progress):
            return progress.now < limit

        return tick

    fast = outcome(settings, vectorise=True, tick=stop_at(40.0))[0]
    figures = fast.receipts
    assert fast.interrupted
    assert figures is not None
    assert figures.pending > 0
    assert figures.delivered + figures.undeliverable + figures.no_receipt + figures.pending == fast.sent


def test_the_fast_path_is_taken(monkeypatch):
    taken = []
    real = engine_module.advance
    monkeypatch.setattr(engine_module, "advance", lambda *a, **k: taken.append(1) or real(*a, **k))
    outcome(settings_of(EMERGENCY, 5000, seed=1), vectorise=True)
    assert taken


LOOP_ONLY = {
    "an account whose senders' own caps bind": (
        ["0.1:0:account=a:window=3:rate=5", "0.1:0:account=a"],
        {"accounts": ["a:rate=20"]},
    ),
    "a sender that never waits": (["0:0.1", "0.1:0:window=2"], {"max_retries": 1}),
    "a gateway's cap": (["0.1:0:window=3:cap=10"], {}),
    "an outage of a sender no cap paces": (["0.1:0:window=3:down=5+10"], {}),
    "an outage of a sender that shares its account": (
        ["0.1:0:window=3:account=a:down=5+10", "0.1:0:account=a"],
        {"accounts": ["a:rate=20"]},
    ),
}


@pytest.mark.parametrize("case", LOOP_ONLY)
def test_what_the_fast_path_does_not_know_takes_the_loop(case, monkeypatch):
    specs, extra = LOOP_ONLY[case]
    settings = settings_of(specs, 500, seed=1, **extra)
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    assert not fast_path(models, trace=False)

    def refused(*args, **kwargs):
        raise AssertionError("the fast path ran")

    monkeypatch.setattr(engine_module, "advance", refused)
    VirtualEngine(models, 500, accounts=account_caps(settings)).run()


def test_trace_takes_the_loop():
    settings = settings_of(EMERGENCY, 500, seed=1)
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    assert fast_path(models, trace=False)
    assert not fast_path(models, trace=True)


def test_a_field_it_does_not_know_turns_it_off(monkeypatch):
    """A behaviour added later (a field of SenderSpec or Settings without a rule
    in sender_model.FAST_*_FIELDS) disables the fast path until someone writes one."""
    settings = settings_of(EMERGENCY, 500, seed=1)
    assert SenderModel(settings.senders[0], settings, 0).vectorisable
    for table in (sender_model.FAST_SENDER_FIELDS, sender_model.FAST_RUN_FIELDS):
        name = next(iter(table))
        rules = dict(table)
        del rules[name]
        monkeypatch.setattr(
            sender_model, "FAST_SENDER_FIELDS" if table is sender_model.FAST_SENDER_FIELDS else "FAST_RUN_FIELDS", rules
        )
        assert not SenderModel(settings.senders[0], settings, 0).vectorisable
        monkeypatch.undo()
    assert {f.name for f in dataclasses.fields(sender_model.SenderSpec)} == set(sender_model.FAST_SENDER_FIELDS)
    assert {f.name for f in dataclasses.fields(Settings)} == set(sender_model.FAST_RUN_FIELDS)


def test_stopped_in_the_fast_path_every_message_is_accounted_for():
    settings = settings_of(EMERGENCY, 400_000, seed=1, max_retries=2, retry_backoff=2.0)
    looks = []

    def tick(progress):
        looks.append(progress.now)
        return len(looks) < 2

    stopped, _, _ = outcome(settings, vectorise=True, tick=tick)
    assert stopped.interrupted
    assert 0 < stopped.sent + stopped.failed < settings.messages
    attempts = sum(st.attempts for st in stopped.stats)
    assert attempts == sum(st.sent + st.failed for st in stopped.stats)
    assert stopped.sim_elapsed == looks[-1] or math.isclose(stopped.sim_elapsed, looks[-1])


SWEEP = [
    (["0.2:0.1:window=4", "0.5:0.2:rate=6:window=3"], {"max_retries": 2, "retry_backoff": 0.5}),
    (["0.1:0.05:window=9", "0.3:0.3"], {"max_retries": 1, "distribution": "exponential"}),
    (["0.05:0.1:window=3:rate=40", "0.2:0.1:window=2"], {"max_retries": 3, "text": "y" * 200}),
    (["1:0.1:window=5", "1:0.3:window=2:rate=3"], {"max_retries": 1, "distribution": "constant"}),
    (["0.2:0.2:window=6:distribution=uniform:spread=0.5", "0.4:0.1:rate=10:window=8"], {"max_retries": 2}),
    (["0.1:0.1:window=6", "0.3:0.2:window=2:rate=5"], {"max_retries": 2, "dlr_median": 4.0, "dlr_p90": 30.0}),
    (["0.1:0.1:window=3:account=a", "0.3:0.2:window=5:account=a"], {"max_retries": 2, "accounts": ["a:rate=15"]}),
]


def test_many_seeds_and_sizes():
    for seed in range(1, 15):
        specs, extra = SWEEP[seed % len(SWEEP)]
        messages = (30, 300, 1500, 4000)[seed % 4]
        settings = settings_of(specs, messages, seed=seed, **extra)
        assert outcome(settings, vectorise=True)[:2] == outcome(settings, vectorise=False)[:2], (seed, specs)


def test_speed_max_and_the_model_check_take_it(monkeypatch):
    """The command line's --speed max goes through the engine's choice (so do
    replications and the real-time run's model check: the same VirtualRunner)."""
    import io

    from smsbatch.cli import main

    taken = []
    real = engine_module.advance
    monkeypatch.setattr(engine_module, "advance", lambda *a, **k: taken.append(1) or real(*a, **k))
    argv = ["-n", "3000", "--sender", "0.1:0.1:window=4", "--sender", "0.3:0:rate=5", "--max-retries", "1"]
    status = main([*argv, "--speed", "max", "--seed", "2", "--no-progress"], stdout=io.StringIO(), stderr=io.StringIO())
    assert status == 0
    assert taken


def random_argv(rng):
    """A random command line: senders with every field the fast path knows (caps,
    accounts, outages fixed and random, backups, receipts), every distribution."""
    argv, accounts = [], {}
    for _ in range(rng.randint(1, 4)):
        fields = [str(rng.choice([0.05, 0.2, 0.5, 1.0, 2.0])), str(rng.choice([0, 0.01, 0.1, 0.3]))]
        fields.append(f"window={rng.choice([1, 2, 3, 5, 10, 30])}")
        if rng.random() < 0.5:
            fields.append(f"rate={rng.choice([2, 5, 10, 30, 100])}")
        if rng.random() < 0.3:
            name = rng.choice("ab")
            accounts[name] = rng.choice([3, 10, 30])
            fields.append(f"account={name}")
        if rng.random() < 0.3:
            fields.append(f"down={rng.randint(0, 60)}+{rng.randint(1, 30)}")
        if rng.random() < 0.15:
            fields.append(f"mtbf={rng.choice([20, 50])}:mttr={rng.choice([2, 8])}")
        if rng.random() < 0.15:
            fields.append("backup")
        if rng.random() < 0.15:
            fields.append(f"dlr-median={rng.choice([1, 5])}:dlr-p90={rng.choice([5, 20])}")
        argv += ["--sender", ":".join(fields)]
    for name, rate in accounts.items():
        argv += ["--account", f"{name}:rate={rate}"]
    argv += ["--distribution", rng.choice(["lognormal", "exponential", "constant", "uniform", "normal"])]
    argv += ["--max-retries", str(rng.choice([0, 1, 2, 3])), "--retry-backoff", str(rng.choice([0, 0.5, 2, 5]))]
    if rng.random() < 0.4:
        argv += ["--dlr-median", str(rng.choice([2, 10])), "--dlr-p90", str(rng.choice([10, 40]))]
    if rng.random() < 0.2:
        argv += ["--undeliverable", "0.05"]
    if rng.random() < 0.25:
        argv += ["--validity", str(rng.choice([30, 100, 300]))]
    if rng.random() < 0.3:
        argv += ["--text", "q" * rng.choice([200, 400])]
    return [*argv, "-n", str(rng.choice([1, 5, 30, 200, 1000, 2000]))]


@pytest.mark.timeout(120)
def test_random_settings_against_the_loop():
    """Random settings of every kind, fast path against the loop: every figure and
    the whole timeline (settings the command line refuses are skipped)."""
    import contextlib
    import io
    import random

    from smsbatch.core.errors import UsageError

    ran = fast = 0
    for seed in range(1, 61):
        argv = random_argv(random.Random(seed))
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                settings = parse_settings([*argv, "--seed", str(seed)])
        except (UsageError, SystemExit, ValueError):
            continue
        loop = outcome(settings, vectorise=False)
        got = outcome(settings, vectorise=True)
        assert got[:2] == loop[:2], argv
        ran += 1
        fast += fast_path(got[2], trace=False)
    assert ran > 45  # (55 of 60 today)
    assert fast > 25  # (30 take the fast path)


def test_the_heap_keeps_what_the_fast_path_frees(monkeypatch):
    """virtual/heap.py raises glibc's thresholds once a process, where there is
    a glibc (this project's machines), and does nothing elsewhere."""
    import ctypes
    import sys

    from smsbatch.virtual import heap

    raise_thresholds = heap._raise_thresholds
    monkeypatch.setattr(heap, "_kept", None)
    glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    assert heap.keep_freed_memory() is glibc
    monkeypatch.setattr(heap, "_raise_thresholds", lambda: pytest.fail("raised twice"))
    assert heap.keep_freed_memory() is glibc
    monkeypatch.setattr(sys, "platform", "darwin")
    assert raise_thresholds() is False
