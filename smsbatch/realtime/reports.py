"""What the runner does with each report and event a backend delivers: the
members and the accounts take the news; what the runner must do about it
comes back as Effects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smsbatch.core.model import Beat, ChildFailed, Claimed, ProducerDone, Progress, Ready, Released, SenderDone
from smsbatch.core.text import plural
from smsbatch.realtime.accounts import Accounts
from smsbatch.realtime.backend import PRODUCER, Exited, Joined, Note, Phase, Resumed
from smsbatch.realtime.effects import NOTHING, Effects, RunState, said
from smsbatch.realtime.members import Members

Handler = Callable[[int, Any, RunState], Effects]


class ReportHandler:
    def __init__(self, members: Members, accounts: Accounts, tracks_claims: bool) -> None:
        self.members = members
        self.accounts = accounts
        self.tracks_claims = tracks_claims
        self.by_type: dict[type, Handler] = {
            Progress: self._progress,
            Claimed: self._claimed,
            Released: self._released,
            Ready: self._ready,
            SenderDone: self._sender_done,
            ProducerDone: self._producer_done,
            ChildFailed: lambda index, report, state: said(f"{report.role} failed:\n{report.traceback.rstrip()}"),
            Exited: self._exited,
            Joined: self._joined,
            Note: lambda index, note, state: said(note.text),
            Resumed: self._resumed,
            Beat: lambda index, report, state: NOTHING,
        }

    def handle(self, index: int, event: object, state: RunState) -> Effects:
        effects = NOTHING
        if isinstance(event, Exited | Joined | Note | Resumed):
            pass  # not word from a live sender: no heartbeat, no movement
        elif index >= 0:
            effects = self.members.heard(index, state, moved=not isinstance(event, Beat))
        elif index == PRODUCER:
            self.members.last_movement = state.heard_at
        return effects + self.by_type[type(event)](index, event, state)

    def _progress(self, index: int, report: Progress, state: RunState) -> Effects:
        retries = self.accounts.progress(report)
        return Effects(retries=tuple(retries)) if retries and state.phase == Phase.RUNNING else NOTHING

    def _claimed(self, index: int, report: Claimed, state: RunState) -> Effects:
        self.accounts.claim(report)
        return NOTHING

    def _released(self, index: int, report: Released, state: RunState) -> Effects:
        batch = self.accounts.release_part(report)
        return Effects(requeue=(batch,)) if batch is not None else NOTHING

    def _ready(self, index: int, report: Ready, state: RunState) -> Effects:
        if index == PRODUCER:
            self.members.producer_ready = True
        else:
            self.members.senders[index].ready = True
            self.members.senders[index].state = "running"
        return NOTHING

    def _sender_done(self, index: int, report: SenderDone, state: RunState) -> Effects:
        member = self.members.senders[index]
        member.finished, member.state = True, "done"
        self.members.live.discard(index)
        if state.phase != Phase.RUNNING:
            return NOTHING
        if report.given_back is None:
            return self.members.gone(index, "left", "asked to stop", state.phase)
        effects = self.members.gone(index, "left", f"gave back {report.given_back}", state.phase, quiet=True)
        given_back = plural(report.given_back, "message")
        return effects + said(f"{member.name} left; gave back {given_back} it had not started")

    def _producer_done(self, index: int, report: ProducerDone, state: RunState) -> Effects:
        self.members.producer_done, self.members.produced = True, report.messages
        return NOTHING

    def _joined(self, index: int, joined: Joined, state: RunState) -> Effects:
        added = self.members.add(joined.name, joined.spec, state.listened)
        assert added == index, f"the backend numbered a new sender {index}, the runner {added}"
        self.members.senders[index].state = "running"
        self.members.senders[index].ready = True
        return said(f"{joined.name} joined from {joined.where}")

    def _resumed(self, index: int, event: Resumed, state: RunState) -> Effects:
        """After an outage every sender was silent through no fault of its own."""
        for member in self.members.senders:
            member.last_heard = state.listened
        return NOTHING

    def _exited(self, index: int, exited: Exited, state: RunState) -> Effects:
        if index == PRODUCER:
            return self._producer_exited(exited, state)
        member = self.members.senders[index]
        member.exited = True
        self.members.live.discard(index)
        if member.finished:
            return NOTHING
        if exited.clean and not self.tracks_claims:
            return NOTHING  # its goodbye, if any, comes through the transport, which hands on what it held
        if state.transport_lost:  # it gave up on the transport too: not lost, just cut off
            member.state = "stopped (transport lost)"
            return NOTHING
        if member.silent_for is not None:
            return self.members.gone(index, "lost", f"silent for {member.silent_for:.0f}s", state.phase)
        if state.phase == Phase.COLD:  # the cold stop ended it (SIGKILL): no death, nothing to send again
            member.state = "ended (cold stop)"
            if self.tracks_claims:
                self.accounts.release(index)  # what it held stays unsent
            return NOTHING
        return self.members.gone(index, "died", exited.reason, state.phase)

    def _producer_exited(self, exited: Exited, state: RunState) -> Effects:
        self.members.producer_exited = True
        if self.members.producer_done or state.transport_lost:
            return NOTHING
        if state.phase == Phase.COLD or (state.phase != Phase.RUNNING and exited.clean):
            return NOTHING  # asked to stop (or ended by the cold stop) before it had made everything
        self.members.producer_lost = True  # the stop policy decides what follows
        self.members.queue_broken = exited.queue_broken
        return said(f"the producer died ({exited.reason}); what it made is sent, the rest counted unsent")
