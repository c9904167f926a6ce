"""Reaching Redis, and waiting out its outages.

Every Redis call smsbatch makes goes through a Patient: while Redis is
unreachable it says so once, retries with backoff for up to --broker-timeout,
then raises BrokerDown. Each call is safe to repeat: a repeated report is a
duplicate, and duplicates are counted once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from smsbatch.core.model import TransportLost
from smsbatch.core.text import redact_url

SOCKET_TIMEOUT = 5.0  # a Redis that answers nothing for this long is down
CONNECT_TIMEOUT = 2.0
FIRST_DELAY = 0.05  # seconds before the first retry; doubled after each failure
LONGEST_DELAY = 1.0


class BrokerDown(TransportLost):
    """Redis stayed unreachable for longer than --broker-timeout."""


class RunGone(TransportLost):
    """The run's keys are gone from Redis: it ended, expired, or Redis lost them."""


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT)


def check_reachable(url: str) -> None:
    """Raise ConnectionError (with the reason) if nothing answers at `url`."""
    try:
        connect(url).ping()
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise ConnectionError(one_line(error)) from None


def one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class Patient:
    """Calls Redis; while it is unreachable, says so once and retries with
    backoff, for up to `timeout` seconds, then raises BrokerDown. `give_up`
    ends the wait sooner (a stop was asked for); `back` is called when Redis
    answers again after an outage. The clock and the sleep are given, so tests
    drive an outage without a server and without waiting."""

    def __init__(
        self,
        url: str,
        timeout: float,
        say: Callable[[str], None],
        give_up: Callable[[], bool] = lambda: False,
        back: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.shown_url = redact_url(url)  # what messages show: no password
        self.timeout = timeout
        self.say = say
        self.give_up = give_up
        self.back = back
        self.clock = clock
        self.sleep = sleep
        self.down_since: float | None = None

    def __call__(self, call: Callable, *args, **kwargs):
        delay = FIRST_DELAY
        while True:
            try:
                result = call(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                self._failed(error)
                self.sleep(delay)
                delay = min(2 * delay, LONGEST_DELAY)
                continue
            if self.down_since is not None:
                self.say(f"Redis at {self.shown_url} is back after {self.clock() - self.down_since:.1f}s")
                self.down_since = None
                self.back()
            return result

    def _failed(self, error: Exception) -> None:
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
            self.say(
                f"Redis at {self.shown_url} is unreachable ({one_line(error)}); retrying for up to {self.timeout:g}s"
            )
        if now - self.down_since >= self.timeout or self.give_up():
            raise BrokerDown(f"Redis at {self.shown_url} unreachable for {now - self.down_since:.1f}s")
