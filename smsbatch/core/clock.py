"""Time, injected: real code reads a Clock, tests pass a FakeClock and move it by hand."""

from __future__ import annotations

import time


class Clock:
    """Real monotonic time in seconds."""

    def now(self) -> float:
        return time.monotonic()


class FakeClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# Simulated seconds: times this close are the same time (a clock read an ulp
# before a due time, a cap's opening or a start finds it due, open, tied).
TIME_SLACK = 1e-9


class SimClock:
    """Simulated seconds: real seconds since `start`, times the speed-up factor.

    Every time smsbatch reports is simulated, so a run at --speed 100 reports the
    same figures as the same run at --speed 1.
    """

    def __init__(self, clock: Clock, speed: float, start: float | None = None) -> None:
        self.clock = clock
        self.speed = speed
        self.start = clock.now() if start is None else start

    def now(self) -> float:
        return self.at(self.clock.now())

    def at(self, real: float) -> float:
        """Simulated time at monotonic time `real`."""
        return (real - self.start) * self.speed

    def real_delay(self, sim_deadline: float) -> float:
        """Real seconds from now until the simulated time `sim_deadline`."""
        return sim_deadline / self.speed + self.start - self.clock.now()
