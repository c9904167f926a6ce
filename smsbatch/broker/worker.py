"""`smsbatch worker`: this machine's senders, added to runs through Redis.

A worker's sender processes are the same as the coordinator's own (with
--broker): realtime/sender.run_sender, a SenderEngine working through a
StreamSenderPort (link.py) instead of a queue and a pipe.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from multiprocessing import connection, get_context
from typing import TextIO

from smsbatch.broker.codec import settings_for_worker
from smsbatch.broker.keys import RUNNING, RunKeys, consumer_name, process_label
from smsbatch.broker.link import StreamSenderPorts
from smsbatch.broker.patient import BrokerDown, Patient, connect
from smsbatch.broker.store import RunStore
from smsbatch.config import SenderSpec, Settings, WorkerSettings
from smsbatch.core.model import ChildFailed
from smsbatch.core.text import plural, redact_url
from smsbatch.realtime.children import StopSignal
from smsbatch.realtime.sender import run_sender

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
        stop_signal = StopSignal()
        children = [self._spawn(index, settings, keys, stop_signal) for index in range(len(settings.senders))]
        self._watch(children, stop_signal, run_id)
        stop_signal.close()

    def _spawn(self, index: int, settings: Settings, keys: RunKeys, stop_signal):
        reader, writer = self.ctx.Pipe(duplex=False)
        spec: SenderSpec = settings.senders[index]
        name = f"{spec.name}@{process_label()}"
        ports = StreamSenderPorts(self.settings.broker, keys, index, consumer_name(index), name, settings, local=False)
        process = self.ctx.Process(
            target=run_sender,
            args=(index, name, settings, ports, writer, stop_signal, os.getpid()),
            daemon=True,
        )
        process.start()
        writer.close()
        return process, reader

    def _watch(self, children, stop_signal, run_id: str) -> None:
        """Until every sender has left: pass on a stop, show what failed."""
        alive = {process.sentinel: process for process, _ in children}
        readers = {reader for _, reader in children}
        signalled = 0
        while alive:
            signalled = self._pass_on_signals(signalled, stop_signal, alive.values(), run_id)
            for ready in connection.wait([*alive, *readers], LOOK_SECONDS):
                if ready in readers:
                    self._read(ready, readers)
                else:
                    alive.pop(ready).join()
        self._pass_on_signals(signalled, stop_signal, (), run_id)  # the senders may have heard it first
        for reader in readers:
            reader.close()
        self.say(f"left run {run_id}")

    def _pass_on_signals(self, signalled: int, stop_signal, alive, run_id: str) -> int:
        """First SIGTERM/SIGINT: the senders leave warmly. Second: at once."""
        if len(self.signals) > signalled == 0:
            self.say(f"leaving run {run_id}: finishing sends in flight, giving back the rest")
            stop_signal.set()
        elif len(self.signals) > 1:
            for process in alive:
                process.kill()
        return len(self.signals)

    def _read(self, reader, readers: set) -> None:
        try:
            report = reader.recv()
        except (EOFError, OSError):
            readers.discard(reader)
            reader.close()
            return
        if isinstance(report, ChildFailed):
            self.say(f"{report.role} failed:\n{report.traceback.rstrip()}")
