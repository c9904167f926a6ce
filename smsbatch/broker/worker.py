"""`smsbatch worker`: this machine's senders, added to runs through Redis.

A worker's sender processes are the same as the coordinator's own (with
--broker): realtime/sender.run_sender, a SenderEngine working through a
StreamSenderPort (link.py) instead of a queue and a pipe.
"""

from __future__ import annotations

import time
from dataclasses import replace
from multiprocessing import get_context
from typing import TextIO

from smsbatch.broker.codec import settings_for_worker
from smsbatch.broker.keys import RUNNING, RunKeys, consumer_name, process_label
from smsbatch.broker.link import StreamSenderPorts
from smsbatch.broker.patient import BrokerDown, Patient, connect
from smsbatch.broker.store import RunStore
from smsbatch.core.model import ChildFailed
from smsbatch.core.settings import WorkerSettings
from smsbatch.core.text import plural, redact_url
from smsbatch.realtime.backend import Phase
from smsbatch.realtime.sender import run_sender
from smsbatch.realtime.stopping import Action, by_signal
from smsbatch.realtime.supervisor import Event, Supervisor

LOOK_SECONDS = 0.2  # how often a waiting worker looks for a run, and for signals


class Worker:
    """`smsbatch worker`: adds this machine's senders to the run in progress,
    or to the next one; run after run, unless --once."""

    def __init__(self, settings: WorkerSettings, out: TextIO, signals: list[int]) -> None:
        self.settings = settings
        self.out = out
        self.signals = signals
        patient = Patient(settings.broker, settings.broker_timeout, self.say, give_up=lambda: bool(self.signals))
        self.store = RunStore(connect(settings.broker), None, patient)  # the runs in progress; for_run(): one
        self.ctx = get_context("fork")
        self.served: set[str] = set()  # a run left (ended, or its senders died) is not joined again

    def say(self, text: str) -> None:
        self.out.write(f"smsbatch worker: {text}\n")
        self.out.flush()

    def run(self) -> int:
        try:
            while not self.signals:
                run_id = self._next_run()
                if run_id is None:
                    break
                self._serve(run_id)
                if self.settings.once:
                    break
        except BrokerDown as error:
            self.say(f"{error}; giving up")
            return 1
        return 0

    def _next_run(self) -> str | None:
        """The oldest run in progress (or the one asked for), once there is one."""
        waiting = False
        wanted = self.settings.run_id
        while not self.signals:
            for run_id in [wanted] if wanted else self.store.runs_in_progress():
                if run_id in self.served:
                    if wanted:
                        return None  # the one run it was asked to serve
                    continue
                run = self.store.for_run(run_id)
                state = run.read_state()
                if state == RUNNING:
                    return run_id
                if wanted and state is not None:
                    self.say(f"run {wanted} is over")
                    return None
                if state is None and not wanted:
                    run.unlist()  # its keys expired: it is gone
            if not waiting:
                self.say(f"waiting for {'run ' + wanted if wanted else 'a run'} on {redact_url(self.settings.broker)}")
                waiting = True
            time.sleep(LOOK_SECONDS)
        return None

    def _serve(self, run_id: str) -> None:
        self.served.add(run_id)
        keys = RunKeys(run_id)
        info = self.store.for_run(run_id).read_info()
        if info is None:
            return  # it ended as we looked
        settings = replace(
            settings_for_worker(info, self.settings.senders), broker_timeout=self.settings.broker_timeout
        )
        self.say(f"joined run {run_id} with {plural(len(settings.senders), 'sender')}")
        supervisor = Supervisor(self.ctx)
        for index, spec in enumerate(settings.senders):
            name = f"{spec.name}@{process_label()}"
            ports = StreamSenderPorts(self.settings.broker, keys, index, consumer_name(index), name, settings, False)
            supervisor.spawn(name, index, run_sender, (index, name, settings, ports))
        self._watch(supervisor, run_id)

    def _watch(self, supervisor: Supervisor, run_id: str) -> None:
        """Until every sender has left: pass on a stop, show what failed."""
        phase = Phase.RUNNING
        while supervisor.running():
            phase = self._pass_on_signals(supervisor, phase, run_id)
            self._show_failures(supervisor.events(LOOK_SECONDS))
        self._pass_on_signals(supervisor, phase, run_id)  # the senders may have heard it first
        self._show_failures(supervisor.close())
        if self.store.for_run(run_id).read_state() is None:  # its keys expired, or were removed
            self.say(f"run {run_id} is gone from Redis (its coordinator ended or died)")
        self.say(f"left run {run_id}")

    def _pass_on_signals(self, supervisor: Supervisor, phase: Phase, run_id: str) -> Phase:
        """The runner's two-stage stop: first SIGTERM/SIGINT, the senders leave warmly; second, at once."""
        decision = by_signal(tuple(self.signals), phase)
        if decision is None:
            return phase
        if decision.action == Action.COLD:
            supervisor.kill_all()
            return Phase.COLD
        self.say(f"leaving run {run_id}: finishing sends in flight, giving back the rest")
        supervisor.stop_signal.set()
        return Phase.WARM

    def _show_failures(self, events: list[Event]) -> None:
        for _, report in events:
            if isinstance(report, ChildFailed):
                self.say(f"{report.role} failed:\n{report.traceback.rstrip()}")
