import random
import statistics

import pytest

from smsbatch.config import UsageError, parse_settings
from smsbatch.core.distributions import DISTRIBUTIONS, MAX_SPREAD, make_sampler


def draws(name, mean, spread, n=10_000, seed=7):
    sample = make_sampler(name, mean, spread, random.Random(seed))
    return [sample() for _ in range(n)]


@pytest.mark.parametrize("name", DISTRIBUTIONS)
@pytest.mark.parametrize("mean", [0.001, 0.5, 3.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_mean_is_honoured_within_3_percent(name, mean, seed):
    spread = min(0.5, MAX_SPREAD[name])
    values = draws(name, mean, spread, seed=seed)
    assert min(values) >= 0
    assert statistics.fmean(values) == pytest.approx(mean, rel=0.03)


@pytest.mark.parametrize(("name", "spread"), [("normal", 0.5), ("uniform", 0.57), ("lognormal", 1.0)])
def test_mean_holds_at_the_widest_spreads(name, spread):
    assert statistics.fmean(draws(name, 1.0, spread)) == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize(("name", "spread"), [("normal", 0.3), ("uniform", 0.3), ("lognormal", 0.3)])
def test_spread_is_the_coefficient_of_variation(name, spread):
    values = draws(name, 2.0, spread)
    assert statistics.stdev(values) / statistics.fmean(values) == pytest.approx(spread, rel=0.1)


def test_exponential_and_constant_shapes():
    values = draws("exponential", 1.0, 0.0)
    assert statistics.stdev(values) == pytest.approx(1.0, rel=0.05)
    assert set(draws("constant", 0.25, 0.9, n=100)) == {0.25}


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_mean_zero_means_no_wait(name):
    assert set(draws(name, 0.0, 0.5, n=100)) == {0.0}


def test_same_seed_same_draws_other_seed_other_draws():
    assert draws("lognormal", 1, 0.5, n=50, seed=3) == draws("lognormal", 1, 0.5, n=50, seed=3)
    assert draws("lognormal", 1, 0.5, n=50, seed=3) != draws("lognormal", 1, 0.5, n=50, seed=4)


def test_spread_limits_are_enforced_per_sender():
    with pytest.raises(UsageError, match="uniform"):
        parse_settings(["--sender", "1:0:distribution=uniform:spread=0.7"])
    parse_settings(["--sender", "1:0:distribution=exponential:spread=5"])
