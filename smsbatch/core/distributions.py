"""Send-time distributions, each honouring the configured mean exactly.

`spread` is the coefficient of variation (standard deviation / mean) where a
distribution has one to set. No distribution is cut off on one side only,
since that would move the mean.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

Sampler = Callable[[], float]

DEFAULT_DISTRIBUTION = "lognormal"
DEFAULT_SPREAD = 0.5

# The largest spread each distribution accepts, and why.
MAX_SPREAD = {
    "exponential": math.inf,  # spread is ignored: an exponential's CV is always 1
    "constant": math.inf,  # spread is ignored
    "normal": 0.5,  # cut symmetrically at 0 and 2*mean: past 0.5 too much is cut
    "uniform": 1 / math.sqrt(3),  # the lower end would go below zero
    "lognormal": 3.0,  # heavier tails make the sample mean of a run unstable
}
DISTRIBUTIONS = tuple(MAX_SPREAD)


def make_sampler(name: str, mean: float, spread: float, rng: random.Random) -> Sampler:
    """A function drawing one simulated send time, in seconds, from `rng`."""
    if mean == 0.0 or name == "constant":
        return lambda: mean
    if name == "exponential":
        rate = 1.0 / mean
        expovariate = rng.expovariate
        return lambda: expovariate(rate)
    if name == "normal":
        return _symmetric_normal(mean, spread * mean, rng)
    if name == "uniform":
        half_width = math.sqrt(3.0) * spread * mean
        uniform = rng.uniform
        return lambda: uniform(mean - half_width, mean + half_width)
    if name == "lognormal":
        sigma = math.sqrt(math.log1p(spread * spread))
        mu = math.log(mean) - sigma * sigma / 2.0  # E[X] = exp(mu + sigma^2/2) = mean
        lognormvariate = rng.lognormvariate
        return lambda: lognormvariate(mu, sigma)
    raise ValueError(f"unknown distribution {name!r}")


def _symmetric_normal(mean: float, sd: float, rng: random.Random) -> Sampler:
    gauss = rng.gauss
    upper = 2.0 * mean

    def draw() -> float:
        # Redraw outside [0, 2*mean]: cut on both sides alike, the mean stays put.
        while True:
            value = gauss(mean, sd)
            if 0.0 <= value <= upper:
                return value

    return draw
