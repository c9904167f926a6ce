"""Who takes part in a run: the senders (listed in the settings, or joined
from elsewhere) and the producer; who is live, who is silent, who is gone."""

from __future__ import annotations

from dataclasses import dataclass

from smsbatch.core.settings import SenderSpec, Settings
from smsbatch.core.text import plural
from smsbatch.realtime.accounts import Accounts
from smsbatch.realtime.backend import Backend, Phase
from smsbatch.realtime.effects import NOTHING, Effects, RunState, said

SILENT_SECONDS = 1.0  # a sender silent this long when it is ended has hung (live ones beat twice a second)
LOOK_GAP_SECONDS = 0.1  # the most listening time one gap between the runner's looks at the reports counts


class Listening:
    """The runner's listening time: real time, except that a gap between two of
    its looks at the reports counts LOOK_GAP_SECONDS at most. A runner stopped
    or busy for a while did not listen meanwhile: the reports sent then wait in
    the queue, and one sender's may come through only after the others' (their
    pipes' writers take turns). Measured in real time, a healthy sender looked
    silent after the runner's own pause; measured in listening time, silence is
    what the runner waited through while it was looking."""

    def __init__(self, now: float) -> None:
        self.at = 0.0
        self.last_look = now

    def look(self, now: float) -> float:
        self.at += min(max(0.0, now - self.last_look), LOOK_GAP_SECONDS)
        self.last_look = now
        return self.at


@dataclass
class Member:
    name: str
    spec: SenderSpec
    last_heard: float  # listening time of the look that found its last report (every report is a heartbeat)
    state: str = "starting"
    ready: bool = False  # said Ready: simulated time may start
    finished: bool = False  # said SenderDone
    exited: bool = False  # its process here exited
    silent_for: float | None = None  # set when it was counted lost for silence


class Members:
    """The run's members, kept by news of them (`state`: the run at that moment);
    what the runner must do about it (notes, work to queue again) is returned."""

    def __init__(self, settings: Settings, accounts: Accounts, backend: Backend, now: float) -> None:
        """`now`: real time; the senders' silence counts from listening time 0."""
        self.settings = settings
        self.accounts = accounts
        self.backend = backend  # who is a process here to end, and what only the transport knows
        self.senders: list[Member] = []
        self.live: set[int] = set()  # senders that have neither finished nor gone
        for spec in settings.senders:
            self.add(spec.name, spec, 0.0)
        self.producer_ready = self.producer_done = self.producer_exited = False
        self.producer_lost = False  # it died before it had made everything
        self.queue_broken = False  # ... while writing to the work queue
        self.produced: int | None = None
        self.last_movement = now  # real time of the last report that was not a beat

    def add(self, name: str, spec: SenderSpec, listened: float) -> int:
        index = self.accounts.add_sender(name, spec)
        self.senders.append(Member(name, spec, listened))
        self.live.add(index)
        return index

    def all_ready(self) -> bool:
        producer = self.producer_ready or self.producer_done or self.producer_exited
        return producer and all(m.ready or m.finished or m.exited for m in self.senders)

    def states(self) -> list[str]:
        return [member.state for member in self.senders]

    def gone(self, index: int, how: str, reason: str, phase: Phase, quiet: bool = False) -> Effects:
        """A sender died, was lost, or left before the end: what it held goes to the others."""
        member = self.senders[index]
        member.state = f"{how} ({reason})"
        self.live.discard(index)
        self.accounts.lost_senders += 1
        if not self.backend.tracks_claims:  # the transport redelivers what it held
            if quiet:
                return NOTHING
            return said(f"{member.name} {how} ({reason}); its batches go to the others "
                        f"after {self.settings.claim_after:g}s")  # fmt: skip
        batches = self.accounts.release(index)
        count = sum(len(batch) for batch in batches)
        note = f"{member.name} {how} ({reason}); {plural(count, 'in-flight message')} re-queued"
        return Effects(notes=(note,), requeue=tuple(batches) if phase != Phase.COLD else ())

    def end_silent(self, state: RunState) -> Effects:
        """A sender silent for --claim-after real seconds (stopped, deadlocked, or
        on a gateway that never answers: a live one beats every half second, also
        mid-send) is lost if the run waits on it. A process here is ended
        (SIGKILL) and its work goes to the others, as a dead one's does."""
        effects = NOTHING
        for index, member in enumerate(self.senders):
            if member.exited or member.finished or member.silent_for is not None:
                continue
            silent = state.listened - member.last_heard
            if silent > self.settings.claim_after and self._waits_on(state, index):
                member.silent_for = silent
                effects += self._lose(index, silent, state.phase)
        return effects

    def _lose(self, index: int, silent: float, phase: Phase) -> Effects:
        name = self.senders[index].name
        if self.backend.end(index):  # a process here: its exit follows, and counts it lost
            return said(f"{name} is silent for {silent:.0f}s: counted lost, ended")
        effects = said(f"{name} is silent for {silent:.0f}s: counted lost; its batches go to the others")
        return effects + self.gone(index, "lost", f"silent for {silent:.0f}s", phase, quiet=True)

    def _waits_on(self, state: RunState, index: int) -> bool:
        """The run needs word from it: before the start, at the end, while it
        holds messages, or for a reason only the transport knows."""
        if not self.backend.tracks_claims:  # what it holds is the transport's to know
            return self.backend.waits_on(index)
        return (
            not state.started
            or state.phase != Phase.RUNNING
            or self.accounts.ledger.held(index) > 0
            or self.backend.waits_on(index)
        )

    def heard(self, index: int, state: RunState, moved: bool) -> Effects:
        """Any word from a sender: it is alive (and back, if it was counted lost)."""
        member = self.senders[index]
        member.last_heard = state.listened
        if moved:
            self.last_movement = state.heard_at
        if member.silent_for is not None and not member.exited and self.backend.open_membership:
            member.silent_for = None
            member.state = "running"
            self.live.add(index)
            return said(f"{member.name} is back")
        return NOTHING

    def note_hung(self, listened: float) -> None:
        """A cold stop: a sender that has said nothing for a while has hung, not merely been slow to stop."""
        for member in self.senders:
            silent = listened - member.last_heard
            if not member.exited and member.silent_for is None and silent > SILENT_SECONDS:
                member.silent_for = silent
