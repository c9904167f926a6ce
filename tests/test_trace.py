"""--trace: one model, two engines, row for row.

Three independent answers for the same settings and seed:
- the virtual engine's trace (the heap, with its fast paths);
- a slow, obvious event loop written here from the model's words
  (docs/model.md): at each time, finishes (by sender, slot), then retries
  entering the queue, then free slots whose rate cap is open start the head of
  the queue in (sender, slot) order, a capped sender's in the order they went
  free;
- the real-time runner and its senders (SenderEngine, the loop of a sender
  process) on a fake clock, in lockstep (realtime/lockstep.py): nothing is
  late there, so its run must be the model's run.
All three draw through the sender's model (core/sender_model.py), so a
difference is a difference of rules, never of randomness.
"""

import csv
import io
import itertools
from collections import deque
from dataclasses import replace

import pytest

from smsbatch.cli import main, make_source
from smsbatch.config import SenderSpec, Settings, parse_account, parse_sender
from smsbatch.core.clock import FakeClock
from smsbatch.core.model import FAILED, RETRY, SENT
from smsbatch.core.sender_model import Draws, SenderModel, account_caps
from smsbatch.core.trace import in_order
from smsbatch.present.monitor import Monitor, NullDisplay
from smsbatch.realtime.lockstep import LockstepBackend, drive
from smsbatch.realtime.runner import Runner
from smsbatch.virtual.engine import VirtualEngine


def settings_of(specs, messages, accounts=(), **kwargs):
    named = tuple(parse_sender(s) for s in specs)
    return Settings(messages=messages, senders=named, accounts=tuple(parse_account(a) for a in accounts), **kwargs)


def virtual_trace(settings):
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    outcome = VirtualEngine(models, settings.messages, trace=True, accounts=account_caps(settings)).run()
    return in_order(outcome.trace)


def reference_trace(settings):
    """The model, the slow and obvious way: no heap, no fast path."""
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    draws = [Draws(m) for m in models]
    slots = [(s, k) for s, m in enumerate(models) for k in range(m.window)]
    free = dict.fromkeys(slots, True)
    free_since = dict.fromkeys(slots, 0.0)
    next_start = [0.0] * len(models)
    account_next = {account.name: 0.0 for account in settings.accounts}

    def opens(s):  # when sender s's caps, its own and its account's, next let it start
        account = settings.senders[s].account
        return max(next_start[s], account_next[account]) if account else next_start[s]

    queue = deque([1] * settings.messages)  # attempt numbers, first attempts first
    in_flight = {}  # slot -> (end, attempt, start, outcome)
    arriving = []  # (time, order, attempt)
    rows = []
    order = 0
    t = 0.0
    while True:
        while True:  # everything that happens at t, in the model's tie order
            ending = sorted(slot for slot, (end, *_) in in_flight.items() if end == t)
            for slot in ending:
                end, attempt, start, outcome = in_flight.pop(slot)
                rows.append((slot[0], slot[1], attempt, start, end, outcome))
                free[slot] = True
                free_since[slot] = end
                if outcome == RETRY:
                    order += 1
                    arriving.append((end + models[slot[0]].retry_delay(attempt), order, attempt + 1))
            for arrival in sorted(a for a in arriving if a[0] == t):
                arriving.remove(arrival)
                queue.append(arrival[2])
            startable = [slot for slot in slots if free[slot] and opens(slot[0]) <= t]
            if not queue or not startable:
                if not ending:
                    break
                continue
            # A capped sender's free slots wait for its cap in the order they went free.
            slot = min(startable, key=lambda sk: (sk[0], free_since[sk] if models[sk[0]].gated else 0.0, sk[1]))
            s = slot[0]
            attempt = queue.popleft()
            seconds, failed = draws[s].take(slot[1])
            if models[s].start_gap:
                next_start[s] = t + models[s].start_gap
            if settings.senders[s].account:
                account_next[settings.senders[s].account] = t + models[s].account_gap
            free[slot] = False
            in_flight[slot] = (t + seconds, attempt, t, models[s].outcome(attempt, failed))
        times = [end for end, *_ in in_flight.values()] + [a[0] for a in arriving]
        if queue:
            times += [opens(s) for s, k in slots if free[(s, k)] and opens(s) > t]
        if not times:
            return in_order(rows)
        t = min(times)


ONE_SENDER = {
    "constant window": (["1:0:window=10"], 100, {"distribution": "constant"}),
    "rate cap, no wait": (["0:0:rate=10"], 60, {}),
    "rate cap over a window": (["0.2:0:window=5:rate=20"], 200, {"distribution": "exponential"}),
    "retries": (["0.1:0.3:window=3"], 150, {"max_retries": 3, "retry_backoff": 0.5}),
    "retries through a cap": (["0.3:0.4:window=4:rate=8"], 120, {"max_retries": 2}),
    "lognormal window": (["0.05:0.05:window=20"], 400, {"distribution": "lognormal", "spread": 0.8}),
    "normal, one slot": (["0.2:0.1"], 100, {"distribution": "normal", "spread": 0.3, "max_retries": 1}),
    "uniform": (["0.4:0.2:window=2"], 80, {"distribution": "uniform", "spread": 0.5, "max_retries": 2}),
    "zero wait with retries": (["0:0.3"], 200, {"max_retries": 2}),
    "zero wait, all fail": (["0:1"], 30, {}),
    # A slot ends just as the cap opens for a free one: the end comes first, and the lower slot starts.
    "a cap as long as a send": (["1:0.2:window=2:rate=1"], 40, {"distribution": "constant", "max_retries": 1}),
    "a wide window, retries": (["0.2:0.2:window=300"], 1000, {"max_retries": 1, "retry_backoff": 0.05}),
    "three segments through a cap": (["0.1:0.1:window=3:rate=12"], 120, {"text": "x" * 400, "max_retries": 1}),
}

SEVERAL_SENDERS = {
    "ties by index": (["0.05:0", "10:0"], 100, {"distribution": "constant"}),
    "equal constant senders": (["1:0", "1:0", "1:0:window=2"], 50, {"distribution": "constant"}),
    "two capped accounts": (["0:0:rate=10", "0:0:rate=10"], 100, {}),
    "the README's four": (["0.05:0.01", "0.08:0.03", "0.15:0.05", "0.4:0.2"], 500, {"max_retries": 2}),
    "windows, caps, retries": (
        ["0.2:0.1:window=5", "0.1:0.2:rate=20", "0.5:0.3:window=3:rate=4"],
        400,
        {"max_retries": 2, "distribution": "exponential"},
    ),
    "a zero-wait sender beside slow ones": (["0:0.5", "1:0.1:window=2"], 60, {"max_retries": 1}),
    "two binds of one account": (["0:0:account=a", "0:0:account=a"], 100, {"accounts": ["a:rate=10"]}),
    "an account over windows and its own caps": (
        ["0.2:0.1:window=4:account=a", "0.1:0.2:rate=15:account=a", "0.3:0.1:window=2:rate=5:account=b", "0.5:0"],
        300,
        {"accounts": ["a:rate=25", "b:rate=4"], "max_retries": 1, "distribution": "exponential"},
    ),
    "accounts and segments": (
        ["0.05:0.05:window=3:account=a", "0.05:0.05:window=3:account=a"],
        150,
        {"accounts": ["a:rate=20"], "text": "x" * 400, "max_retries": 1},
    ),
    "a two-segment UCS-2 text": (
        ["0.05:0.05", "0.1:0.1:window=2:rate=15"],
        200,
        {"text": "🚨 " + "Flash flood: move to higher ground now. " * 2, "max_retries": 2},
    ),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("case", [*ONE_SENDER, *SEVERAL_SENDERS])
def test_the_virtual_engine_runs_the_model_as_written(case, seed):
    specs, messages, extra = {**ONE_SENDER, **SEVERAL_SENDERS}[case]
    settings = settings_of(specs, messages, seed=seed, **extra)
    expected = reference_trace(settings)
    assert len(expected) >= messages
    assert virtual_trace(settings) == expected


def lockstep_trace(settings):
    """The real-time runner and its senders (SenderEngine) on a fake clock, in lockstep."""
    settings = replace(settings, trace="trace.csv", progress=False)
    source, _ = make_source(settings)
    clock = FakeClock(0.0)
    backend = LockstepBackend(settings, source, clock)
    runner = Runner(settings, source, Monitor(NullDisplay(io.StringIO()), 1.0, clock), backend, clock, [])
    drive(runner, backend, clock)
    result = runner.finish()
    snapshot = result.snapshot
    assert (snapshot.sent + snapshot.failed, snapshot.unsent, snapshot.duplicates) == (settings.messages, 0, 0)
    return in_order(result.trace)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("seed", "speed"), [(1, 1.0), (2, 37.0)])
@pytest.mark.parametrize("case", [*ONE_SENDER, *SEVERAL_SENDERS])
def test_the_real_time_runner_runs_the_same_attempts(case, seed, speed):
    specs, messages, extra = {**ONE_SENDER, **SEVERAL_SENDERS}[case]
    settings = settings_of(specs, messages, seed=seed, speed=speed, **extra)
    assert lockstep_trace(settings) == virtual_trace(settings)


def test_the_trace_covers_every_attempt_once():
    settings = settings_of(["0.1:0.3:window=3", "0.2:0.5:rate=5"], 300, seed=9, max_retries=2)
    rows = virtual_trace(settings)
    finals = [row for row in rows if row[5] in (SENT, FAILED)]
    assert len(finals) == 300  # every message ends once
    assert sum(row[5] == RETRY for row in rows) == len(rows) - 300
    assert all(row[3] <= row[4] for row in rows)


def run_smsbatch(argv):
    out, err = io.StringIO(), io.StringIO()
    return main(argv, stdout=out, stderr=err), err.getvalue()


@pytest.mark.timeout(60)
def test_trace_file_in_both_modes(tmp_path, no_children_left):
    argv = ["-n", "40", "--sender", "0.2:0.2:window=2", "--sender", "0.1:0.1:rate=20", "--max-retries", "1"]
    argv += ["--seed", "3", "--no-progress"]
    virtual, real = tmp_path / "v.csv", tmp_path / "r.csv"
    assert run_smsbatch([*argv, "--speed", "max", "--trace", str(virtual)])[0] == 0
    assert run_smsbatch([*argv, "--speed", "20", "--trace", str(real)])[0] == 0
    for path in (virtual, real):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["sender", "slot", "attempt", "start_s", "end_s", "outcome", "receipt_s"]
        assert {row["receipt_s"] for row in rows} == {""}  # no receipts modelled
        assert {row["outcome"] for row in rows} <= {"sent", "failed", "retry"}
        assert sum(row["outcome"] != "retry" for row in rows) == 40
        valid_steps(rows, {"sender 1": 2, "sender 2": 1}, {"sender 2": 1 / 20})


def valid_steps(rows, windows, gaps):
    """Each row is a step the model allows: a slot runs one attempt at a time,
    and a capped sender's starts are at least 1/rate apart."""
    by_slot, starts = {}, {}
    for row in rows:
        start, end = float(row["start_s"]), float(row["end_s"])
        assert 0 <= start <= end
        assert int(row["slot"]) < windows[row["sender"]]
        by_slot.setdefault((row["sender"], row["slot"]), []).append((start, end))
        starts.setdefault(row["sender"], []).append(start)
    for spans in by_slot.values():
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(spans))
    for sender, gap in gaps.items():
        times = sorted(starts[sender])
        assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(times))


def test_trace_is_bad_input_where_it_cannot_be_kept(tmp_path):
    for extra in (["--replications", "2"], ["--broker", "redis://127.0.0.1:1/0"]):
        status, err = run_smsbatch(["-n", "5", "--trace", str(tmp_path / "t.csv"), *extra])
        assert status == 2
        assert "--trace" in err
        assert "Traceback" not in err
        assert len(err.splitlines()) == 1
    status, err = run_smsbatch(["-n", "5", "--trace", str(tmp_path / "no" / "such" / "dir" / "t.csv")])
    assert status == 2
    assert "--trace" in err
    assert not (tmp_path / "t.csv").exists()


def test_one_spec_helper_reads_like_the_command_line():
    assert SenderSpec(0.2, 0.1, window=5) == parse_sender("0.2:0.1:window=5")
