"""One contract, every backend: what the runner may count on, whatever moves
the work (huey's storage tests are the model: one suite, each backend).

Each test runs the one Runner over each backend: the in-memory fake
(instant), the local processes, and Redis Streams (a
redis-server: CI's, or one the tests start). Whatever the backend:
- every message is counted once, and each sender answers its Stop;
- a sender ended mid-run is noticed, and its work is sent by the others;
- a warm stop accounts for every message, and leaves no process behind.
"""

from __future__ import annotations

import io
import multiprocessing
import signal
from collections.abc import Callable

import pytest

from smsbatch.assembly import make_runner, make_source
from smsbatch.config import parse_settings
from smsbatch.core.clock import Clock
from smsbatch.core.snapshot import Snapshot
from smsbatch.present.monitor import Monitor, NullDisplay
from smsbatch.realtime.memory import MemoryBackend
from smsbatch.realtime.runner import ExitStatus, Runner, RunResult

BACKENDS = ["memory", "local", "redis"]


@pytest.fixture
def backend(request) -> tuple[str, str]:
    """(the backend's name, the Redis URL for "redis": CI's server, or one of
    our own, see conftest.redis_url)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return request.param, url


class WatchingMonitor(Monitor):
    """Calls `when(snapshot)` at every tick (the runner's own loop), drawing nothing."""

    def __init__(self, when: Callable[[Snapshot], None]) -> None:
        super().__init__(NullDisplay(io.StringIO()), 0.0)
        self.when = when

    def tick(self, snapshot_of: Callable[[], Snapshot]) -> None:
        self.when(snapshot_of())


def run(
    backend: tuple[str, str], args: list[str], when: Callable[[Runner, Snapshot], None] = lambda r, s: None
) -> RunResult:
    argv = ["--no-progress", "--seed", "5", "--claim-after", "2", *args]
    name, url = backend
    if name == "redis":
        argv += ["--broker", url]
    settings = parse_settings(argv)
    source, _ = make_source(settings)
    holder: list[Runner] = []
    monitor = WatchingMonitor(lambda snap: when(holder[0], snap))
    if name == "memory":
        runner = Runner(settings, source, monitor, MemoryBackend(settings, source), Clock(), [])
    else:
        made = make_runner(settings, source, monitor, [])
        assert isinstance(made, Runner)
        runner = made
    holder.append(runner)
    result = runner.run()
    assert multiprocessing.active_children() == []  # no process left, however it ended
    return result


def accounted(result: RunResult, messages: int) -> None:
    s = result.snapshot
    assert s.messages == messages
    assert s.sent + s.failed + s.unsent == messages
    assert s.sent + s.failed <= result.produced if result.produced is not None else True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_every_message_is_counted_once_and_every_sender_answers_its_stop(backend):
    result = run(backend, ["-n", "3000", "--speed", "1000", "--sender", "0.2:0.1", "--sender", "0.3:0"])
    s = result.snapshot
    accounted(result, 3000)
    assert result.exit_status == ExitStatus.OK
    assert result.produced == 3000
    assert (s.unsent, s.duplicates) == (0, 0)
    assert s.stats.attempts == 3000 + s.retried  # every attempt reached the stats once
    assert [view.state for view in s.senders] == ["done", "done"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_sender_ended_mid_run_is_noticed_and_its_work_is_sent_by_the_others(backend):
    ended: list[bool] = []

    def end_the_first(runner: Runner, snap: Snapshot) -> None:
        if not ended and snap.sent >= 300:
            ended.append(runner.backend.end(0))

    args = ["-n", "1000", "--speed", "1000", "--sender", "0.5:0", "--sender", "0.5:0"]
    result = run(backend, args, end_the_first)
    s = result.snapshot
    assert ended == [True]  # every backend here runs its senders as its own processes (or objects)
    assert s.senders[0].state == "died (SIGKILL)"  # and not "running": its last reports come before its death
    assert s.lost_senders == 1
    assert s.senders[1].state == "done"
    accounted(result, 1000)
    assert (s.sent, s.unsent) == (1000, 0)
    assert s.senders[1].stats.sent > s.senders[0].stats.sent


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_warm_stop_accounts_for_every_message_and_leaves_no_process(backend):
    def stop_midway(runner: Runner, snap: Snapshot) -> None:
        if snap.sent >= 200 and not runner.signals:
            runner.signals.append(signal.SIGTERM)

    result = run(backend, ["-n", "20000", "--speed", "100", "--sender", "0.5:0", "--sender", "1:0"], stop_midway)
    s = result.snapshot
    assert result.exit_status == ExitStatus.TERMINATED
    assert result.stopped_by == "SIGTERM"
    accounted(result, 20000)
    assert 200 <= s.sent < 20000
    assert s.unsent > 0
