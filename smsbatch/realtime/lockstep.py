"""The real-time senders on a fake clock, in one process, in lockstep.

A backend for the one Runner: each sender is the real-time SenderEngine
(realtime/sender.py), the same loop that runs in a sender process, but its
waits (take, pause) only say when it wants to run next, and the driver runs
whoever is due first: the runner before the senders, senders in index order,
each woken at the exact simulated time it asked for (no wake-up granularity,
nothing kept beyond its free slots). So nothing here is late, and the run is
the model's run: tests/test_trace.py holds its trace to the virtual engine's,
row for row. No process, no sleep, no thread:

    drive(runner, backend, clock)
      runner.step(now) -> backend.events() -> one due SenderEngine.step()
                       <- its reports (Claimed, Released, Progress, SenderDone)
      runner -> backend.offer(): first attempts ahead of retries, as in the model's queue
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

from smsbatch.core.clock import FakeClock, SimClock
from smsbatch.core.model import MessageBatch, ProducerDone, Ready, Stop
from smsbatch.core.sender_model import RunOutages, SenderModel, account_caps
from smsbatch.core.settings import Settings
from smsbatch.core.source import MessageSource
from smsbatch.realtime.backend import PRODUCER, Exited, Phase, Work
from smsbatch.realtime.retries import is_first_attempts
from smsbatch.realtime.runner import Runner
from smsbatch.realtime.sender import SenderEngine
from smsbatch.realtime.supervisor import Event


class _Turns:
    """One sender's waits, as the times it wants to run again."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.wake_at = 0.0
        self.on_work = False  # it waits in take(): new work wakes it too

    def waited(self, seconds: float, on_work: bool) -> None:
        self.wake_at, self.on_work = self.clock.now() + seconds, on_work


class LockstepBackend:
    tracks_claims = True
    open_membership = False
    stop_grace = 0.0
    drain_limit = None
    run_id = None
    join_hint = ""

    def __init__(self, settings: Settings, source: MessageSource, clock: FakeClock) -> None:
        self.settings = settings
        self.source = source
        self.clock = clock
        self.queue: deque[Work] = deque()
        self.said: list[Event] = []
        self.stopping = False
        self.batches: Iterator[MessageBatch] | None = None
        self.turns = [_Turns(clock) for _ in settings.senders]
        self.engines: list[SenderEngine | None] = [None] * len(settings.senders)
        self.accounts = account_caps(settings)  # one process: the senders of an account share its Pacer
        self.outages = RunOutages(settings)

    # ---- membership ----

    def begin(self) -> None:
        self.batches = self.source.batches()
        self.said += [(PRODUCER, Ready(PRODUCER))] + [(i, Ready(i)) for i in range(len(self.engines))]

    def start_clock(self, start: float) -> None:
        """Simulated time 0: the producer's batches are all queued (it costs no time in the model)."""
        assert self.batches is not None
        for batch in self.batches:
            self.queue.append(batch)
        self.said += [
            (PRODUCER, ProducerDone(self.source.batch_count, self.source.messages)),
            (PRODUCER, Exited(PRODUCER, True, "exit status 0")),
        ]
        self.engines = [self._engine(i, start) for i in range(len(self.engines))]

    def _engine(self, index: int, start: float) -> SenderEngine:
        turns = self.turns[index]
        return SenderEngine(
            index,
            SenderModel(self.settings.senders[index], self.settings, index),
            self.settings,
            SimClock(self.clock, self.settings.speed, start),
            take=lambda timeout: self._take(turns, timeout),
            report=lambda item: self.said.append((index, item)),
            pause=lambda seconds: turns.waited(seconds, on_work=False),
            sleep=self.clock.advance,  # a warm stop's grace: time goes on for everyone
            stop_requested=lambda: self.stopping,
            wake=0.0,
            ahead=0,
            accounts=self.accounts,
            outages=self.outages,
        )

    def waits_on(self, sender: int) -> bool:
        return False

    def end(self, sender: int) -> bool:
        if self.engines[sender] is not None:
            self.engines[sender] = None
            self.said.append((sender, Exited(sender, False, "SIGKILL")))
        return True

    def end_all(self) -> None:
        for index in range(len(self.engines)):
            self.end(index)

    def children_running(self) -> bool:
        return any(engine is not None for engine in self.engines) or any(isinstance(e, Exited) for _, e in self.said)

    def close(self) -> list[Event]:
        self.end_all()
        said, self.said = [e for e in self.said if not isinstance(e[1], Exited)], []
        return said

    # ---- work and reports ----

    def offer(self, item: Work) -> bool:
        """First attempts go ahead of queued retries and stops: the model's queue
        holds every first attempt from time 0 on."""
        if is_first_attempts(item):
            later = next((i for i, queued in enumerate(self.queue) if not is_first_attempts(queued)), len(self.queue))
            self.queue.insert(later, item)
        else:
            self.queue.append(item)
        return True

    def announce(self, phase: Phase) -> None:
        if phase in (Phase.WARM, Phase.COLD):
            self.stopping = True

    def _take(self, turns: _Turns, timeout: float) -> MessageBatch | Stop | None:
        if self.queue:
            return self.queue.popleft()
        turns.waited(timeout, on_work=True)
        return None

    def events(self, timeout: float) -> list[Event]:
        """One turn of the first sender due now, if any."""
        index = self.due_now()
        if index is not None:
            self._turn(index)
        said, self.said = self.said, []
        return said

    def due_now(self) -> int | None:
        now = self.clock.now()
        for index, engine in enumerate(self.engines):
            turns = self.turns[index]
            if engine is not None and (turns.wake_at <= now or (turns.on_work and self.queue)):
                return index
        return None

    def _turn(self, index: int) -> None:
        engine = self.engines[index]
        assert engine is not None
        self.turns[index].waited(0.0, on_work=False)  # due again at once, unless it waits
        if not engine.step():
            engine.finish()
            self.engines[index] = None
            self.said.append((index, Exited(index, True, "exit status 0")))

    def next_wake(self) -> float:
        return min(
            (t.wake_at for t, e in zip(self.turns, self.engines, strict=True) if e is not None), default=math.inf
        )


def drive(runner: Runner, backend: LockstepBackend, clock: FakeClock, most_turns: int = 10_000_000) -> None:
    """Run to the end: the runner's turn, then whoever is due, in simulated-time order."""
    runner.start()
    for _ in range(most_turns):
        if runner.over():
            return
        runner.step(clock.now())
        if backend.due_now() is None and not backend.said:
            now = clock.now()
            later = min(backend.next_wake(), now + runner.next_due_in())
            clock.t = later if later > now else math.nextafter(now, math.inf)  # an ulp short of a due time
    raise RuntimeError(f"the lockstep run was not over after {most_turns} turns")
