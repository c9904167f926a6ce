"""The model in virtual time (--speed max): exact cases, analytic results, determinism.

Every figure here is checked against something independent of the engine:
arithmetic for the exact cases, queueing results for the random ones.
"""

import math

import numpy as np
import pytest

from smsbatch.config import parse_settings
from smsbatch.core.reach import SentHistogram, reach_counts
from smsbatch.core.sender_model import BLOCK, SenderModel, SendTimes
from smsbatch.virtual import fast
from smsbatch.virtual.engine import VirtualEngine


def simulate(*args):
    settings = parse_settings(["--speed", "max", *args])
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    return VirtualEngine(models, settings.messages).run()


# ---- exact cases ----


def test_constant_sends_on_a_window_take_messages_over_slots_times_the_mean():
    outcome = simulate("-n", "1000", "--sender", "1:0:window=10", "--distribution", "constant")
    assert outcome.sim_elapsed == 100.0
    assert outcome.reach == {"50": 50.0, "90": 90.0, "99": 99.0, "100": 100.0}


def test_a_rate_cap_with_zero_wait_spaces_the_starts():
    outcome = simulate("-n", "1000", "--sender", "0:0:rate=5")
    assert outcome.sim_elapsed == pytest.approx(999 / 5, rel=1e-12)


def test_a_slow_sender_takes_one_message_and_the_fast_one_the_rest():
    outcome = simulate("-n", "100", "--sender", "0.05:0", "--sender", "10:0", "--distribution", "constant")
    assert outcome.sim_elapsed == 10.0
    assert [s.attempts for s in outcome.stats] == [99, 1]
    assert outcome.reach["99"] == pytest.approx(99 * 0.05)


def test_two_equal_senders_share_the_work_and_start_up_costs_nothing():
    outcome = simulate("-n", "200", "--sender", "0.01:0", "--sender", "0.01:0", "--distribution", "constant")
    assert outcome.sim_elapsed == pytest.approx(1.0)
    assert [s.attempts for s in outcome.stats] == [100, 100]


def test_ties_go_to_the_lower_sender_index():
    # Both senders free at 0 and at every multiple of 1 s: sender 1 takes the odd message out.
    outcome = simulate("-n", "3", "--sender", "1:0", "--sender", "1:0", "--distribution", "constant")
    assert [s.attempts for s in outcome.stats] == [2, 1]
    assert outcome.sim_elapsed == 2.0


def test_retries_wait_their_backoff_and_failures_without_retries_never_reach_100():
    outcome = simulate("-n", "50", "--sender", "0:1", "--max-retries", "2", "--retry-backoff", "4")
    assert outcome.failed == 50
    assert outcome.retried == 100
    # Two backoffs: 4 x U(0.5, 1.5), then 8 x U(0.5, 1.5).
    assert 4 * 0.5 + 8 * 0.5 <= outcome.sim_elapsed <= 4 * 1.5 + 8 * 1.5
    assert outcome.reach["50"] is None
    assert outcome.reach["100"] is None


def test_a_retry_goes_to_an_idle_sender_that_can_start_it_not_to_one_waiting_for_its_cap():
    # Sender 1 (cap 0.1/s) sends at 0 and 10; sender 2 fails everything. The
    # retries come back at about 26.9 and 27.1: sender 1 takes the first, its cap
    # then closed until 36.9, so sender 2, idle, takes the second and fails it for good.
    outcome = simulate(
        "-n",
        "3",
        "--sender",
        "1:0:window=2:rate=0.1",
        "--sender",
        "1:1",
        "--distribution",
        "constant",
        "--max-retries",
        "1",
        "--retry-backoff",
        "20",
        "--seed",
        "1",
    )
    assert (outcome.sent, outcome.failed) == (2, 1)
    assert [s.attempts for s in outcome.stats] == [2, 3]
    assert outcome.sim_elapsed < 30


def test_a_capped_senders_rate_is_measured_between_its_finishes():
    outcome = simulate("-n", "10", "--sender", "0:0:rate=5")
    assert outcome.stats[0].rate == pytest.approx(5.0)


def test_a_capped_senders_free_slots_wait_for_the_cap_in_turn():
    """10 slots, a start every 0.2 s, each send 1 s: the k-th start (k >= 10) takes
    the slot that went free first, the one that started k - 10 ticks before, which
    has waited 1 s; the first ten waited 0.2 k from time 0. So every slot's wait
    counts: 0.2 x 45 + 990 x 1.0 = 999 slot-seconds, about half the slot-time (5 of
    10 slots send at a time). Were the lowest free slot to go first, six slots
    would take every start and the others' waits, never ended by a start, would
    not count (201.8 under that rule)."""
    outcome = simulate("-n", "1000", "--sender", "1:0:window=10:rate=5", "--distribution", "constant")
    assert outcome.capped[0] == pytest.approx(0.2 * 45 + 990 * 1.0, rel=1e-9)


# ---- analytic results for random send times ----


def harmonic(c):
    return sum(1.0 / k for k in range(1, c + 1))


def test_exponential_makespan_matches_the_queueing_result():
    # N exponential sends on c slots: E[makespan] = (N - c)/c x mean + H_c x mean.
    n, c, mean = 2000, 8, 0.5
    expected = (n - c) / c * mean + harmonic(c) * mean
    makespans = [
        simulate(
            "-n", str(n), "--sender", f"{mean}:0:window={c}", "--distribution", "exponential", "--seed", str(seed)
        ).sim_elapsed
        for seed in range(40)
    ]
    standard_error = np.std(makespans) / math.sqrt(len(makespans))
    assert np.mean(makespans) == pytest.approx(expected, abs=4 * standard_error)


def test_expected_attempts_with_retries_match_the_geometric_series():
    # Each message is attempted until it succeeds or has had 1 + R attempts.
    n, p, retries = 20_000, 0.3, 2
    outcome = simulate(
        "-n",
        str(n),
        "--sender",
        f"0.01:{p}:window=50",
        "--max-retries",
        str(retries),
        "--retry-backoff",
        "0.1",
        "--seed",
        "3",
    )
    attempts = sum(s.attempts for s in outcome.stats)
    expected = n * sum(p**k for k in range(retries + 1))
    assert attempts == pytest.approx(expected, rel=0.02)
    assert outcome.failed == pytest.approx(n * p ** (retries + 1), rel=0.25)
    assert outcome.sent + outcome.failed == n


def test_the_rate_cap_binds_when_the_window_could_go_faster():
    # window/mean = 100/s, rate 20/s: the cap decides, N messages take about (N - 1)/20 + one send.
    outcome = simulate("-n", "2000", "--sender", "1:0:window=100:rate=20", "--seed", "5")
    assert outcome.sim_elapsed == pytest.approx(1999 / 20 + 1.0, abs=3.0)


# ---- determinism ----


SETTINGS = (
    "-n",
    "5000",
    "--sender",
    "0.3:0.03:window=10",
    "--sender",
    "0.8:0.06:window=30:rate=20",
    "--sender",
    "2:0.1:window=50",
    "--max-retries",
    "1",
    "--retry-backoff",
    "3",
)


def figures(outcome):
    return (
        outcome.sim_elapsed,
        outcome.sent,
        outcome.failed,
        outcome.retried,
        outcome.reach,
        [(s.attempts, s.time_sum, s.buckets) for s in outcome.stats],
    )


def test_the_same_seed_gives_the_same_figures_to_the_bit():
    assert figures(simulate(*SETTINGS, "--seed", "9")) == figures(simulate(*SETTINGS, "--seed", "9"))


def test_another_seed_gives_another_run():
    assert figures(simulate(*SETTINGS, "--seed", "9")) != figures(simulate(*SETTINGS, "--seed", "10"))


@pytest.mark.parametrize("distribution", ["lognormal", "normal", "exponential", "uniform", "constant"])
def test_draws_do_not_depend_on_the_block_size(distribution):
    settings = parse_settings(["--sender", "0.5:0.2", "--distribution", distribution, "--spread", "0.4"])
    one = SenderModel(settings.senders[0], settings, 0)
    other = SenderModel(settings.senders[0], settings, 0)
    times, failed = one.block(BLOCK + 37)
    parts = [other.block(n) for n in (5, 1000, BLOCK - 968)]
    assert np.array_equal(times, np.concatenate([t for t, _ in parts]))
    assert np.array_equal(failed, np.concatenate([f for _, f in parts]))


def test_each_distribution_keeps_its_mean():
    for name in ("lognormal", "normal", "exponential", "uniform"):
        draws = SendTimes(name, 2.0, 0.5, np.random.default_rng(1)).take(40_000)
        assert draws.mean() == pytest.approx(2.0, rel=0.02), name
        assert draws.min() >= 0.0


# ---- reach times in real time: a histogram, off by at most a bin ----


def test_the_sent_histogram_finds_reach_times_within_a_bin():
    rng = np.random.default_rng(2)
    times = np.sort(rng.uniform(0, 500, 10_000))
    histogram = SentHistogram()
    for t in rng.permutation(times):  # reported out of order, as senders do
        histogram.add(float(t))
    for percent, count in reach_counts(10_000).items():
        assert histogram.reach(10_000)[percent] == pytest.approx(times[count - 1], abs=histogram.width)
    assert histogram.width <= 500 / 1024
    assert histogram.reach(10_000)["100"] == times[-1]


@pytest.mark.parametrize("vectorise", [False, True])
def test_every_progress_look_counts_every_finished_attempt(vectorise, monkeypatch):
    # The first look comes before any block of draws is used up: the stats must
    # still hold what finished (once they showed avg 0.000s beside 3,911 sent).
    # The fast path looks between its chunks (small ones here, to look often).
    monkeypatch.setattr(fast, "chunk_starts", lambda lanes: 2000)
    settings = parse_settings(["-n", "30000", "--sender", "0.05:0.1", "--sender", "0.4:0.2", "--max-retries", "1"])
    models = [SenderModel(s, settings, i) for i, s in enumerate(settings.senders)]
    engine = VirtualEngine(models, 30000, vectorise=vectorise)
    looks = []

    def tick(progress):
        stats = progress.stats_now()
        looks.append((sum(st.attempts for st in stats), progress.sent + progress.failed + progress.retried))
        looks[-1] += (sum(st.time_sum for st in stats) / max(1, looks[-1][0]),)
        return True

    engine.run(tick)
    assert len(looks) > 2
    for attempts, finished, mean in looks:
        assert attempts == finished
        assert mean > 0.05  # both senders' times, not the one block folded so far


def test_a_bug_in_the_engine_still_accounts_for_every_message(tmp_path, monkeypatch):
    import io
    import json

    from smsbatch.cli import main
    from smsbatch.virtual import engine

    calls = []

    def explode(self, t, slot, attempt, seconds):
        calls.append(t)
        if len(calls) > 10_000:
            raise RuntimeError("a bug of ours")
        return real_finish(self, t, slot, attempt, seconds)

    real_finish = engine._Simulation._finish
    monkeypatch.setattr(engine._Simulation, "_finish", explode)
    err, path = io.StringIO(), tmp_path / "s.json"
    status = main(["-n", "50000", "--sender", "0:0.1", "--speed", "max", "--summary-json", str(path)], stderr=err)
    summary = json.loads(path.read_text())
    assert status == 1
    assert summary["stopped_by"] == "internal error"
    assert summary["sent"] + summary["failed"] + summary["unsent"] == 50000
    assert summary["unsent"] > 0
    assert "RuntimeError: a bug of ours" in err.getvalue()
