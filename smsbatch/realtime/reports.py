"""What the runner does with each report and event a backend delivers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smsbatch.core.model import Beat, ChildFailed, Claimed, ProducerDone, Progress, Ready, Released, SenderDone
from smsbatch.core.text import plural
from smsbatch.realtime.backend import PRODUCER, Exited, Joined, Note, Phase, Resumed

if TYPE_CHECKING:
    from smsbatch.realtime.runner import Runner


class ReportHandler:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.members = runner.members
        self.accounts = runner.accounts
        self.by_type: dict[type, Callable[[int, Any], None]] = {
            Progress: self._progress,
            Claimed: lambda index, report: self.accounts.claim(report),
            Released: self._released,
            Ready: self._ready,
            SenderDone: self._sender_done,
            ProducerDone: self._producer_done,
            ChildFailed: lambda index, report: self.runner.note(f"{report.role} failed:\n{report.traceback.rstrip()}"),
            Exited: self._exited,
            Joined: self._joined,
            Note: lambda index, note: self.runner.note(note.text),
            Resumed: lambda index, event: self._resumed(),
            Beat: lambda index, report: None,
        }

    def handle(self, index: int, event: object) -> None:
        if isinstance(event, Exited | Joined | Note | Resumed):
            pass  # not word from a live sender: no heartbeat, no movement
        elif index >= 0:
            self.members.heard(self.runner, index, moved=not isinstance(event, Beat))
        elif index == PRODUCER:
            self.members.last_movement = self.runner.heard_at
        self.by_type[type(event)](index, event)

    def _progress(self, index: int, report: Progress) -> None:
        for retry in self.accounts.progress(report):
            if self.runner.phase == Phase.RUNNING:
                self.runner.retries.add(retry.message_id, retry.phone, retry.attempt, retry.back_at)

    def _released(self, index: int, report: Released) -> None:
        batch = self.accounts.release_part(report)
        if batch is not None:
            self.runner.pending.add(batch)

    def _ready(self, index: int, report: Ready) -> None:
        if index == PRODUCER:
            self.members.producer_ready = True
        else:
            self.members.senders[index].ready = True
            self.members.senders[index].state = "running"

    def _sender_done(self, index: int, report: SenderDone) -> None:
        member = self.members.senders[index]
        member.finished, member.state = True, "done"
        self.members.live.discard(index)
        if self.runner.phase != Phase.RUNNING:
            return
        if report.given_back is None:
            self.members.gone(self.runner, index, "left", "asked to stop")
            return
        self.members.gone(self.runner, index, "left", f"gave back {report.given_back}", quiet=True)
        given_back = plural(report.given_back, "message")
        self.runner.note(f"{member.name} left; gave back {given_back} it had not started")

    def _producer_done(self, index: int, report: ProducerDone) -> None:
        self.members.producer_done, self.members.produced = True, report.messages

    def _joined(self, index: int, joined: Joined) -> None:
        added = self.members.add(joined.name, joined.spec, self.runner.now)
        assert added == index, f"the backend numbered a new sender {index}, the runner {added}"
        self.members.senders[index].state = "running"
        self.members.senders[index].ready = True
        self.runner.note(f"{joined.name} joined from {joined.where}")

    def _resumed(self) -> None:
        """After an outage every sender was silent through no fault of its own."""
        for member in self.members.senders:
            member.last_heard = self.runner.heard_at

    def _exited(self, index: int, exited: Exited) -> None:
        if index == PRODUCER:
            self._producer_exited(exited)
            return
        member = self.members.senders[index]
        member.exited = True
        self.members.live.discard(index)
        if member.finished:
            return
        if exited.clean and not self.runner.backend.tracks_claims:
            return  # its goodbye, if any, comes through the transport, which hands on what it held
        if self.runner.transport_lost:  # it gave up on the transport too: not lost, just cut off
            member.state = "stopped (transport lost)"
        elif member.silent_for is not None:
            self.members.gone(self.runner, index, "lost", f"silent for {member.silent_for:.0f}s")
        else:
            self.members.gone(self.runner, index, "died", exited.reason)

    def _producer_exited(self, exited: Exited) -> None:
        runner = self.runner
        self.members.producer_exited = True
        if self.members.producer_done or runner.transport_lost:
            return
        if runner.phase != Phase.RUNNING and exited.clean:
            return  # asked to stop before it had made everything
        runner.note(f"the producer died ({exited.reason}); what it made is sent, the rest counted unsent")
        self.members.producer_lost = True  # the stop policy decides what follows
        self.members.queue_broken = exited.queue_broken
