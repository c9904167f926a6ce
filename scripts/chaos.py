"""Chaos: random runs, one random fault each at a random moment, every trial checked.

    python scripts/chaos.py [--trials N] [--seed S] [--time-limit SECONDS] [--quick]
                            [--only FAULT[,FAULT]] [--no-redis] [--trial SEED [--dry-run]] [-v]

Each trial is drawn from its own seed (the master --seed gives the trials'
seeds): a configuration (1-12 senders, windows, rate caps, retries, a
recipients file with duplicates, replications, virtual time; through Redis
with 0-3 workers) and one fault at a random moment (SIGKILL of one, several or
all senders, of the producer, of the main process, of a worker or of the
coordinator; SIGSTOP of a sender, of a worker or of the main process, continued
later or never; SIGINT or SIGTERM once or twice; Redis restarted). `--trial
SEED` replays one trial: the same configuration, fault and moment.

Trials run one at a time. Every process the harness starts (smsbatch, each
worker, redis-server) leads a session of its own, so what is left of a trial
is found by its session id, whatever its title. Redis trials use a
redis-server of the harness's own, on a free loopback port, emptied between
trials.

Each trial is held to:
- the summary's sums: messages == sent + failed + unsent, attempts == sent +
  failed + retried + duplicates, the senders' attempts add up to the run's;
- derived figures that agree with the counts: the timeline's last row (sent,
  failed, retried), its per-sender attempts, within_deadline and the reach
  times against the timeline;
- the exit status the fault calls for (and the summary's own);
- no traceback on any stream of smsbatch or a worker;
- no process of the trial left 5 s after it ended;
- an end within a bound after the fault (and after the run, for workers).

It prints a table of fault x trials x failures, and each failure with the
command that replays it. Exit status: 0 if every trial held, 1 if not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
SMSBATCH = [sys.executable, "-m", "smsbatch"]
LEFTOVER_SECONDS = 5.0  # a process of the trial still there this long after it ended is a failure
STOP_BOUND = 6.0  # real seconds from a stop signal to the end (a warm stop takes under 3)
WORKER_BOUND = 20.0  # real seconds from the run's end (or its coordinator's death) to a worker's
BROKER_TIMEOUT = 2.0  # --broker-timeout of Redis trials: keys expire this + 5 s after the coordinator dies
NO_TRACE = ("Traceback", "KeyboardInterrupt", "Exception ignored")

SUMMARY_KEYS = ("messages", "sent", "failed", "unsent", "attempts", "retried", "duplicates", "senders", "produced",
                "within_deadline", "deadline_s", "reach_s", "sim_elapsed_s", "exit_status", "stopped_by")  # fmt: skip
# fault -> (where it applies: "local", "broker", "any"; what it does)
FAULTS: dict[str, tuple[str, str]] = {
    "none": ("any", "no fault: the control"),
    "kill-sender": ("any", "SIGKILL one sender"),
    "kill-senders": ("local", "SIGKILL several senders, not all"),
    "kill-all-senders": ("local", "SIGKILL every sender"),
    "kill-producer": ("any", "SIGKILL the producer"),
    "kill-main": ("any", "SIGKILL the main process"),
    "stop-sender": ("any", "SIGSTOP one sender, SIGCONT later or never"),
    "pause-main": ("any", "SIGSTOP the main process for 1.5 s (> --claim-after 1)"),
    "sigint": ("any", "SIGINT to the process group, as Ctrl-C does"),
    "sigint-twice": ("any", "SIGINT to the process group twice"),
    "sigterm": ("any", "SIGTERM to the main process"),
    "sigterm-twice": ("any", "SIGTERM to the main process twice"),
    "kill-worker": ("broker", "SIGKILL a worker and its senders"),
    "stop-worker": ("broker", "SIGSTOP a worker and its senders, SIGCONT later or never"),
    "kill-coordinator": ("broker", "SIGKILL the coordinator and its own children"),
    "redis-restart": ("broker", "Redis shut down (saving) and started again 0.3-1.5 s later"),
}
MAIN_ONLY = ("none", "kill-main", "pause-main", "sigint", "sigint-twice", "sigterm", "sigterm-twice")
SLOW = ("kill-coordinator", "redis-restart")  # they wait out key expiry or an outage: not in --quick


# ---- a trial: drawn from its seed alone ----


@dataclass
class Trial:
    seed: int
    argv: list[str]  # smsbatch's options, without the summary path
    fault: str
    at: float  # real seconds after smsbatch's handlers are in place
    broker: bool = False
    workers: list[list[str]] = field(default_factory=list)  # each worker's --sender options
    local_senders: int = 0  # the coordinator's own senders (all of them, without --broker)
    pause: float | None = None  # SIGSTOP faults: seconds until SIGCONT (None: never)
    target: int = 0  # which sender or worker
    victims: list[int] = field(default_factory=list)  # the local senders a sender fault hits (0-based)
    recipients: list[str] | None = None  # the lines of a recipients file
    replications: int = 1
    virtual: bool = False
    estimate: float = 1.0  # real seconds the run should take
    slowdown: float = 1.0  # how much longer once the fault took senders away, at worst

    def command(self, summary: str, recipients: str | None) -> list[str]:
        argv = [recipients if arg == "{recipients}" and recipients else arg for arg in self.argv]
        return [*SMSBATCH, *argv, "--summary-json", summary]

    def describe(self) -> str:
        where = f"redis, {len(self.workers)} worker(s)" if self.broker else "local"
        if self.virtual:
            where = "virtual"
        if self.replications > 1:
            where += f", {self.replications} replications"
        timing = f" at {self.at:.2f}s" if self.fault != "none" else ""
        pause = "" if self.pause is None else f", continued after {self.pause:.1f}s"
        if self.fault in ("stop-sender", "stop-worker") and self.pause is None:
            pause = ", never continued"
        return f"{self.fault}{timing}{pause} ({where})"


def draw_trial(seed: int, quick: bool, redis: bool, only: list[str] | None) -> Trial:
    rng = random.Random(seed)
    broker = redis and rng.random() < 0.35
    virtual = not broker and rng.random() < 0.12
    replications = rng.choice((2, 3)) if not broker and rng.random() < 0.15 else 1
    workers = [_senders(rng, rng.randint(1, 3)) for _ in range(rng.randint(0, 3))] if broker else []
    no_local = broker and workers and rng.random() < 0.25
    local = [] if no_local else _senders(rng, rng.randint(1, 12 if not broker else 4))
    options = [arg for spec in local for arg in ("--sender", spec)]
    retries = rng.choice((0, 0, 1, 2, 3))
    messages = rng.randint(100, 3000 if quick else 6000)
    specs = [_spec_numbers(spec) for spec in local + [s for w in workers for s in w]]
    sim = _sim_estimate(specs, messages, retries)
    target = rng.uniform(0.2, 0.6) if quick else rng.uniform(0.5, 2.5)
    speed = min(1e5, max(1.0, sim / target))
    gateways = _gateways(rng, local, sim, broker) if rng.random() < 0.3 else []
    if gateways:
        local = gateways[0]
        options = [arg for spec in local for arg in ("--sender", spec)] + gateways[1]
    argv = ["-n", str(messages), *options, "--max-retries", str(retries), "--seed", str(rng.getrandbits(31))]
    argv += [
        "--retry-backoff",
        f"{rng.uniform(0.0, 0.1):.3f}",
        "--deadline",
        f"{max(sim * rng.uniform(0.3, 1.5), 0.01):.3f}",
    ]
    argv += ["--no-progress"] if rng.random() < 0.7 else ["--interval", "0.1"]
    argv += ["--speed", "max" if virtual else f"{speed:.4g}"]
    recipients = None
    if rng.random() < 0.2:
        recipients = _recipients_lines(rng, messages)
        argv += ["--recipients", "{recipients}"]
    if replications > 1:
        argv += ["--replications", str(replications), "--jobs", "2"]
    if broker:
        argv += ["--broker", "{broker}", "--claim-after", "1", "--broker-timeout", str(BROKER_TIMEOUT)]
        if no_local:
            argv += ["--no-local-senders"]
    else:
        argv += ["--claim-after", rng.choice(("1", "2") if quick else ("1", "2", "10"))]
    estimate = 0.2 if virtual else sim / speed * (replications / 2 if replications > 1 else 1)
    trial = Trial(seed, argv, "none", 0.0, broker, workers, len(local), replications=replications,
                  virtual=virtual, recipients=recipients, estimate=estimate)  # fmt: skip
    fault = rng.choice(_faults_for(trial, quick, only))
    trial.fault = fault
    if fault == "pause-main":  # paused longer than --claim-after: no sender may be ended for it
        trial.argv[trial.argv.index("--claim-after") + 1] = "1"
    trial.at = rng.uniform(0.0, estimate * 1.1 + 0.2)
    trial.target = rng.randrange(max(1, len(workers)))
    trial.victims = _victims(rng, fault, local, specs)
    if fault in ("stop-sender", "stop-worker"):
        never = rng.random() < 0.4 and not (quick and broker)  # through Redis, a goodbye never said is waited for
        trial.pause = None if never else rng.uniform(0.2, 1.5 if quick else 3.0)
    if fault == "redis-restart":
        trial.argv[trial.argv.index("--broker-timeout") + 1] = "6"
        trial.pause = rng.uniform(0.3, 1.5)
    if fault != "kill-all-senders":
        trial.slowdown = _slowdown(specs, trial.victims)
    return trial


MAX_SLOWDOWN = 4.0  # the senders a fault leaves carry at least a quarter of the run's pace: trials stay short


def _victims(
    rng: random.Random, fault: str, local: list[str], specs: list[tuple[float, float, int, float]]
) -> list[int]:
    """Which local senders a sender fault hits: one, several (not all), or every one;
    so many that the rest would take over MAX_SLOWDOWN times as long are spared."""
    if fault == "kill-all-senders":
        return list(range(len(local)))
    if fault not in ("kill-sender", "stop-sender", "kill-senders") or not local:
        return []
    count = rng.randint(2, len(local) - 1) if fault == "kill-senders" else 1
    victims = rng.sample(range(len(local)), count)
    while len(victims) > 1 and _slowdown(specs, victims) > MAX_SLOWDOWN:
        victims.pop()
    if _slowdown(specs, victims) > MAX_SLOWDOWN:  # one that carries most of the run: the slowest instead
        victims = [min(range(len(local)), key=lambda i: _rate(specs[i]))]
    return victims


def _rate(spec: tuple[float, float, int, float]) -> float:
    mean, _, window, cap = spec
    return min(window / mean, cap) if cap else window / mean


def _slowdown(specs: list[tuple[float, float, int, float]], victims: list[int]) -> float:
    """How much longer the rest of the run takes without the victims' senders."""
    total = sum(_rate(spec) for spec in specs)
    left = total - sum(_rate(specs[i]) for i in victims)
    return total / left if left > 1e-9 * total else 1.0  # none left: the run ends at once


def _faults_for(trial: Trial, quick: bool, only: list[str] | None) -> list[str]:
    senders = trial.local_senders + sum(len(w) for w in trial.workers)
    allowed = []
    for name, (where, _) in FAULTS.items():
        if only and name not in only:
            continue
        if (where == "broker" and not trial.broker) or (where == "local" and trial.broker):
            continue
        if (trial.virtual or trial.replications > 1) and name not in MAIN_ONLY:
            continue
        if quick and name in SLOW:
            continue
        if name == "kill-senders" and senders < 3:
            continue
        if trial.broker and name in ("kill-sender", "stop-sender") and (senders < 2 or not trial.local_senders):
            continue  # through Redis a run with no sender left waits for one to join: by design
        if name in ("kill-worker", "stop-worker") and not (
            trial.workers and (trial.local_senders or len(trial.workers) > 1)
        ):
            continue
        if trial.broker and name == "kill-producer":
            continue  # its death is the stop policy's; through Redis it is covered by the broker tests
        allowed.append(name)
    return allowed or ["none"]


def _senders(rng: random.Random, count: int) -> list[str]:
    specs = []
    for _ in range(count):
        spec = f"{rng.uniform(0.005, 0.2):.4f}:{rng.choice((0.0, 0.01, 0.05, 0.2, 0.4)):g}"
        if rng.random() < 0.3:
            spec += f":window={rng.randint(2, 20)}"
        if rng.random() < 0.15:
            spec += f":rate={rng.uniform(20, 500):.0f}"
        specs.append(spec)
    return specs


def _gateways(rng: random.Random, local: list[str], sim: float, broker: bool) -> tuple[list[str], list[str]]:
    """Real gateways on some of the senders (outages, a cap that throttles, a backup)
    and receipts: (the senders' specs, the run's options)."""
    specs = []
    for spec in local:
        mean, _, window, _ = _spec_numbers(spec)
        if rng.random() < 0.3:
            spec += f":down={rng.uniform(0, 0.8 * sim):.4f}+{rng.uniform(0.05, 0.3) * sim:.4f}"
        if rng.random() < 0.2:
            spec += f":cap={max(1.0, rng.uniform(0.5, 2.0) * window / mean):.1f}"
        specs.append(spec)
    if not broker and len(specs) >= 2 and rng.random() < 0.3:
        specs[-1] += ":backup"
    options = ["--throttle-pause", f"{rng.uniform(0.001, 0.05) * sim:.4f}"]
    if rng.random() < 0.5:
        median = rng.uniform(0.01, 0.3) * sim
        options += ["--dlr-median", f"{median:.4f}", "--dlr-p90", f"{median * 3:.4f}", "--undeliverable", "0.03"]
    return specs, options


def _spec_numbers(spec: str) -> tuple[float, float, int, float]:
    """(mean, fail rate, window, rate cap or 0) of a --sender SPEC."""
    parts = spec.split(":")
    keys = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    return float(parts[0]), float(parts[1]), int(keys.get("window", 1)), float(keys.get("rate", 0))


def _sim_estimate(specs: list[tuple[float, float, int, float]], messages: int, retries: int) -> float:
    """Simulated seconds the run takes, roughly: attempts over the senders' throughput."""
    fail = sum(f for _, f, _, _ in specs) / len(specs)
    attempts = messages * sum(fail**k for k in range(retries + 1))
    throughput = sum(min(w / m, r) if r else w / m for m, _, w, r in specs)
    return attempts / throughput


def _recipients_lines(rng: random.Random, messages: int) -> list[str]:
    """Numbers with duplicates (the same number written again, or another way) and a junk line."""
    from smsbatch.core.phones import PhonePool

    numbers = PhonePool.for_region("US").numbers(rng.getrandbits(31), range(messages))
    lines = ["phone", *numbers]
    for _ in range(rng.randint(1, max(1, messages // 10))):
        number = rng.choice(numbers)
        lines.insert(rng.randrange(1, len(lines)), number if rng.random() < 0.5 else number.removeprefix("+1"))
    lines.append("not a number")
    return lines


# ---- processes: each in a session of its own ----


def sessions_of(sids: set[int]) -> dict[int, str]:
    """Every live process whose session is one of `sids`, with its title."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[3]) not in sids:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                found[int(entry)] = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
    return found


def catches(pid: int, sig: int) -> bool:
    """/proc says `pid` has a handler for `sig`: smsbatch's first line has run."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            line = next(line for line in handle if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(line.split()[1], 16) & (1 << (sig - 1)))


class Proc:
    """A command in a session of its own, its output read as it comes."""

    def __init__(self, command: list[str], **popen) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            start_new_session=True, **popen,
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
            for pipe, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()
        self.ended_at: float | None = None

    @staticmethod
    def _read(pipe, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        if self.proc.poll() is None:
            return True
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        return False

    def wait(self, seconds: float) -> bool:
        """True if it ended within `seconds`."""
        deadline = time.monotonic() + seconds
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def text(self) -> str:
        for reader in self.readers:
            reader.join(2)
        return "".join(self.out) + "".join(self.err)


def kill_sessions(sids: set[int]) -> None:
    for pid in sessions_of(sids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    """A redis-server of the harness's own, on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="smsbatch-chaos-redis-")
        self.start()

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", self.dir]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def cli(self, *args: str) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, timeout=10, check=False)

    def restart(self, outage: float) -> None:
        self.cli("shutdown", "save")
        self.proc.wait(10)
        time.sleep(outage)  # the fault itself: Redis away this long
        self.start()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- one trial ----


@dataclass
class Outcome:
    trial: Trial
    failures: list[str]
    applied: bool
    seconds: float


def run_trial(trial: Trial, redis: Redis | None, workdir: str) -> Outcome:
    started = time.monotonic()
    failures: list[str] = []
    summary_path = os.path.join(workdir, "summary.json")
    with contextlib.suppress(FileNotFoundError):
        os.remove(summary_path)
    recipients = None
    if trial.recipients is not None:
        recipients = os.path.join(workdir, "recipients.csv")
        with open(recipients, "w") as handle:
            handle.write("\n".join(trial.recipients) + "\n")
    command = trial.command(summary_path, recipients)
    if trial.broker:
        assert redis is not None
        redis.cli("flushall")  # no run of an earlier trial for a worker to join
        command = [redis.url if arg == "{broker}" else arg for arg in command]
    workers = [
        Proc([*SMSBATCH, "worker", "--broker", redis.url, "--once", *(a for s in senders for a in ("--sender", s))])
        for senders in trial.workers
    ] if redis is not None else []  # fmt: skip
    main = Proc(command)
    sids = {main.pid} | {w.pid for w in workers}
    stopped: list[int] = []  # SIGSTOPped pids, continued at the end whatever happens
    applied = False
    try:
        handlers = _wait(lambda: catches(main.pid, signal.SIGTERM) or not main.running(), 20)
        if not handlers:
            failures.append("smsbatch never caught SIGTERM (its handlers) within 20 s")
        fault_at = time.monotonic() + trial.at
        applied, fault_time = _apply_fault(trial, main, workers, redis, fault_at, stopped)
        bound = _end_bound(trial, applied)
        if not main.wait(max(0.0, (fault_time or time.monotonic()) + bound - time.monotonic())):
            failures.append(f"hung: still running {bound:.0f}s after the {'fault' if applied else 'start'}")
            main.signal_group(signal.SIGKILL)
            main.wait(10)
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for worker in workers:
            if not any("joined run" in line for line in worker.out):
                worker.signal_group(signal.SIGTERM)  # the run ended before it joined: it waits for the next
            if not worker.wait(max(0.0, (main.ended_at or time.monotonic()) + WORKER_BOUND - time.monotonic())):
                failures.append(f"worker {worker.pid} still running {WORKER_BOUND:.0f}s after the run ended")
                worker.signal_group(signal.SIGKILL)
                worker.wait(10)
        failures += _left_behind(sids)
        failures += _check_streams(main, workers)
        failures += _check_exit(trial, main, workers, applied, summary_path)
    finally:
        kill_sessions(sids)
        for proc in [main, *workers]:
            proc.signal_group(signal.SIGKILL)
            proc.proc.wait()
        if redis is not None and redis.proc.poll() is not None:
            redis.start()  # a restart cut short
    return Outcome(trial, failures, applied, time.monotonic() - started)


def _wait(condition: Callable[[], bool], seconds: float, poll: float = 0.002) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def _titled(sid: int, prefix: str) -> list[int]:
    return sorted(pid for pid, title in sessions_of({sid}).items() if title.startswith(prefix))


def _apply_fault(
    trial: Trial, main: Proc, workers: list[Proc], redis: Redis | None, at: float, stopped: list[int]
) -> tuple[bool, float | None]:
    """Wait for the moment, then apply the fault if its target is there: (applied, when)."""
    if trial.fault == "none":
        return False, None
    while time.monotonic() < at:
        if not main.running():
            return False, None
        time.sleep(0.002)
    if not main.running():
        return False, None
    fault, now = trial.fault, time.monotonic()
    if fault == "kill-main":
        os.kill(main.pid, signal.SIGKILL)
    elif fault in ("sigint", "sigint-twice"):
        main.signal_group(signal.SIGINT)
        if fault == "sigint-twice":
            time.sleep(0.05)
            main.signal_group(signal.SIGINT)
    elif fault in ("sigterm", "sigterm-twice"):
        os.kill(main.pid, signal.SIGTERM)
        if fault == "sigterm-twice":
            time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(main.pid, signal.SIGTERM)
    elif fault == "pause-main":
        os.kill(main.pid, signal.SIGSTOP)
        time.sleep(1.5)  # the fault itself: a main process that does not look for 1.5 s
        os.kill(main.pid, signal.SIGCONT)
    elif fault == "kill-coordinator":
        main.signal_group(signal.SIGKILL)
    elif fault == "redis-restart":
        assert redis is not None

        # Once the run and every worker are under way: Redis away when smsbatch or a
        # worker starts is bad input (exit 2), by design.
        def under_way() -> bool:
            workers_in = all(any("smsbatch worker: " in line for line in w.out) or not w.running() for w in workers)
            return workers_in and any(" on redis://" in line for line in main.out)

        if not _wait(lambda: under_way() or not main.running(), 20):
            return False, None
        if not main.running():
            return False, None
        redis.restart(trial.pause or 0.5)
    elif fault in ("kill-worker", "stop-worker"):
        worker = workers[trial.target % len(workers)]
        if not worker.running():
            return False, None
        if fault == "kill-worker":
            worker.signal_group(signal.SIGKILL)
        else:
            return _stop_for_a_while(trial, list(sessions_of({worker.pid})), stopped), now
    else:  # the run's children, by title
        return _fault_a_child(trial, main, stopped), now
    return True, now


def _fault_a_child(trial: Trial, main: Proc, stopped: list[int]) -> bool:
    fault = trial.fault
    if fault == "kill-producer":
        targets = _titled(main.pid, "smsbatch: producer")[:1]
    else:  # sender i is titled "smsbatch: sender i (mean ...)"
        targets = [pid for i in trial.victims for pid in _titled(main.pid, f"smsbatch: sender {i + 1} (")]
    if not targets:
        return False
    if fault == "stop-sender":
        return _stop_for_a_while(trial, targets, stopped)
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def _stop_for_a_while(trial: Trial, pids: list[int], stopped: list[int]) -> bool:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    stopped += pids
    if trial.pause is not None:
        threading.Timer(trial.pause, _continue, (pids,)).start()
    return True


def _continue(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _end_bound(trial: Trial, applied: bool) -> float:
    """Real seconds the run may take after the fault (or its start): a stop
    signal ends it soon; any other fault leaves the rest of the run to do."""
    if applied and trial.fault.startswith(("sigint", "sigterm")):
        return STOP_BOUND + (5 if trial.replications > 1 else 0)
    rest = 3 * trial.estimate * trial.replications * trial.slowdown + 15
    if trial.fault in ("stop-sender", "stop-worker") and applied:
        rest += 12  # --claim-after up to 10 s before a stopped sender is counted lost
    if trial.fault == "redis-restart":
        rest += 10
    return rest


def _left_behind(sids: set[int]) -> list[str]:
    deadline = time.monotonic() + LEFTOVER_SECONDS
    left = sessions_of(sids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = sessions_of(sids)
    return [f"left behind {LEFTOVER_SECONDS:g}s after the end: pid {pid} {title!r}" for pid, title in left.items()]


def _check_streams(main: Proc, workers: list[Proc]) -> list[str]:
    problems = []
    for name, proc in [("smsbatch", main)] + [(f"worker {w.pid}", w) for w in workers]:
        text = proc.text()
        for word in NO_TRACE:
            if word in text:
                lines = text.splitlines()
                first = next(index for index, line in enumerate(lines) if word in line)
                shown = "\n      ".join(line[:160] for line in lines[max(0, first - 2) : first + 30])
                problems.append(f"{name} wrote {word!r}:\n      {shown}")
                break
    return problems


def expected_statuses(trial: Trial, applied: bool) -> set[int]:
    """The exit statuses the fault calls for."""
    fault = trial.fault if applied else "none"
    senders = trial.local_senders + sum(len(w) for w in trial.workers)
    if fault in ("sigint", "sigint-twice"):
        return {130}
    if fault in ("sigterm", "sigterm-twice"):
        return {143}
    if fault in ("kill-main", "kill-coordinator"):
        return {-signal.SIGKILL}
    if fault == "kill-all-senders":
        return {0, 1}  # 0: every message was already sent when they died
    if fault == "kill-producer":
        return {0, 1}  # 0: it had made every batch when it died
    if fault == "kill-sender" and senders == 1:
        return {0, 1}
    if fault == "stop-sender" and senders == 1:
        return {0, 1}  # the only sender, counted lost once silent for --claim-after
    return {0}


def _check_exit(trial: Trial, main: Proc, workers: list[Proc], applied: bool, summary_path: str) -> list[str]:
    problems = []
    status = main.proc.returncode
    expected = expected_statuses(trial, applied)
    summary = None
    if os.path.exists(summary_path):
        try:
            with open(summary_path) as handle:
                summary = json.load(handle)
        except ValueError as error:
            problems.append(f"summary file is not JSON: {error}")
    if status in (-signal.SIGKILL,) and -signal.SIGKILL in expected:
        return problems  # killed outright: no summary owed
    if status not in expected and not (status == 0 and summary and summary.get("stopped_by") == "completed"
                                       and trial.fault.startswith(("sigint", "sigterm"))):  # fmt: skip
        said = "\n      ".join([line.rstrip()[:160] for line in main.err if line.startswith("smsbatch: ")][-8:])
        problems.append(f"exit status {status}, expected {sorted(expected)}; it said:\n      {said}")
    if summary is None:
        problems.append("no summary file")
        return problems
    if summary.get("exit_status") != status:
        problems.append(f"summary says exit_status {summary.get('exit_status')}, the process {status}")
    problems += check_summary(summary)
    for replication in summary.get("replications", []):
        problems += [
            f"replication {replication.get('replication')}: {p}" for p in check_summary(replication, timeline=False)
        ]
    for worker in workers:
        code = worker.proc.returncode
        if code not in (0, -signal.SIGKILL) or (code != 0 and trial.fault != "kill-worker"):
            problems.append(f"worker {worker.pid} exited {code}, expected 0")
    return problems


# ---- the figures, checked against one another ----


def check_summary(s: dict, timeline: bool = True) -> list[str]:
    """Problems with one run's summary: its sums, and its derived figures against its counts
    (a replication's entry in `replications` has no timeline of its own)."""
    problems = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    missing = [key for key in SUMMARY_KEYS if key not in s]
    if missing:
        return [f"the summary lacks {', '.join(missing)}"]
    m, sent, failed, unsent = s["messages"], s["sent"], s["failed"], s["unsent"]
    expired = s.get("expired_not_accepted", 0)
    need(
        m == sent + failed + expired + unsent,
        f"messages {m} != sent {sent} + failed {failed} + expired_not_accepted {expired} + unsent {unsent}",
    )
    fates = ("delivered", "undeliverable", "no_receipt", "receipt_pending", "expired", "failed", "unsent")
    if all(key in s for key in fates):  # what became of each: its receipt, or why none came
        need(sum(s[key] for key in fates) == m, f"messages {m} != {' + '.join(f'{k} {s[k]}' for k in fates)}")
    accepted = ("delivered", "undeliverable", "no_receipt", "receipt_pending", "receipt_expired")
    if all(key in s for key in accepted):  # ... and of each accepted one
        need(sum(s[key] for key in accepted) == sent, f"sent {sent} != {' + '.join(f'{k} {s[k]}' for k in accepted)}")
    need(min(sent, failed, unsent) >= 0, f"a negative count: sent {sent}, failed {failed}, unsent {unsent}")
    attempts = s["attempts"]
    finer = sent + failed + s["retried"] + s["duplicates"]
    need(
        attempts == finer,
        f"attempts {attempts} != sent + failed + retried {s['retried']} + duplicates {s['duplicates']}",
    )
    senders = s.get("senders", [])
    if senders:
        need(sum(x["attempts"] for x in senders) == attempts, "the senders' attempts do not add up to the run's")
        need(
            sum(x["sent"] + x["failed"] for x in senders) == attempts,
            "the senders' sent + failed are not their attempts",
        )
    if s.get("produced") is not None:
        need(sent + failed <= s["produced"] <= m, f"produced {s['produced']} outside [sent + failed, messages]")
    within = s["within_deadline"]
    need(0.0 <= within <= 1.0, f"within_deadline {within} outside [0, 1]")
    need(within * m <= sent + 1e-6, f"within_deadline {within} x {m} messages exceeds the {sent} sent")
    problems += _check_reach(s)
    if "timeline" in s:
        problems += _check_timeline(s)
    elif timeline and "before the run started" not in s.get("stopped_by", "") and s.get("replications") != []:
        problems.append("no timeline")
    return problems


def _check_reach(s: dict) -> list[str]:
    problems = []
    m, sent = s["messages"], s["sent"]
    last = None
    for percent in ("50", "90", "99", "100"):
        reach = s["reach_s"].get(percent)
        needed = -(-m * int(percent) // 100)
        if (reach is not None) != (sent >= needed and m > 0):
            problems.append(f"reach_s[{percent}] is {reach} with {sent} of {m} sent (needs {needed})")
        if reach is not None:
            if last is not None and reach < last - 1e-9:
                problems.append(f"reach_s[{percent}] {reach} before a lower share's {last}")
            if reach > s["sim_elapsed_s"] * (1 + 1e-3) + 1e-6:
                problems.append(f"reach_s[{percent}] {reach} after the run's end {s['sim_elapsed_s']}")
            last = reach
    return problems


def _check_timeline(s: dict) -> list[str]:
    problems = []
    columns, rows = s["timeline"]["columns"], s["timeline"]["rows"]
    if not rows:
        return ["the timeline has no rows"] if s["attempts"] else []
    last = dict(zip(columns, rows[-1], strict=True))
    for key in ("sent", "failed", "retried"):
        if last[key] != s[key]:
            problems.append(f"the timeline's last {key} is {last[key]}, the summary's {s[key]}")
    for sender in s["senders"]:
        column = f"{sender['name']}:attempts"
        if column in columns:
            total = sum(row[columns.index(column)] or 0 for row in rows)
            if total != sender["attempts"]:
                problems.append(f"the timeline's {column} add up to {total}, the summary's {sender['attempts']}")
    # The reach times and within_deadline against the timeline's cumulative sent,
    # within a bin each way (and the reach histogram's own 1/2048 of the run).
    width = rows[0][0]
    slack = width + s["sim_elapsed_s"] / 1024
    t = [row[0] for row in rows]
    cum = [row[columns.index("sent")] for row in rows]
    # With receipts modelled the deadline counts delivered messages (the timeline's delivered column).
    counted = "delivered" if s.get("receipts_modelled") and "delivered" in columns else "sent"
    by_deadline = [row[columns.index(counted)] for row in rows]

    def sent_by(time_s: float, totals: list[int] = cum) -> int:
        """Sent (or `totals`) by the end of the last bin that ends at or before `time_s`."""
        counted = 0
        for end, total in zip(t, totals, strict=True):
            if end > time_s:
                break
            counted = total
        return counted

    m = s["messages"]
    for percent, reach in s["reach_s"].items():
        if reach is None:
            continue
        needed = -(-m * int(percent) // 100)
        if sent_by(reach + slack + width) < needed and t[-1] > reach + slack + width:
            problems.append(
                f"reach_s[{percent}] {reach}: the timeline has fewer than {needed} sent by {reach + slack:.4g}"
            )
        if sent_by(reach - slack - width) >= needed:
            problems.append(f"reach_s[{percent}] {reach}: the timeline had {needed} sent before {reach - slack:.4g}")
    deadline, within = s["deadline_s"], s["within_deadline"] * m
    final = s["delivered"] if counted == "delivered" else s["sent"]
    low = sent_by(deadline - width, by_deadline)
    high = sent_by(deadline + width, by_deadline) if deadline + width < t[-1] else final
    if not low - 0.5 <= within <= high + 0.5:
        problems.append(
            f"within_deadline x messages = {within:.1f}: the timeline has {low} to {high} {counted} by then"
        )
    return problems


# ---- many trials ----


def trial_seeds(master: int, trials: int) -> list[int]:
    rng = random.Random(master)
    return [rng.getrandbits(32) for _ in range(trials)]


def replay_command(trial: Trial, args: argparse.Namespace) -> str:
    extra = " --quick" if args.quick else ""
    extra += " --no-redis" if args.no_redis else ""
    extra += f" --only {','.join(args.only)}" if args.only else ""
    return f"python scripts/chaos.py --trial {trial.seed}{extra}"


def print_table(outcomes: list[Outcome], out) -> None:
    rows: dict[str, list[int]] = {}
    for outcome in outcomes:
        counts = rows.setdefault(outcome.trial.fault, [0, 0, 0])
        counts[0] += 1
        counts[1] += outcome.applied or outcome.trial.fault == "none"
        counts[2] += bool(outcome.failures)
    out.write(f"\n{'fault':18} {'trials':>7} {'applied':>8} {'failures':>9}\n")
    for fault in FAULTS:
        if fault in rows:
            trials, applied, failed = rows[fault]
            out.write(f"{fault:18} {trials:7} {applied:8} {failed:9}\n")
    total = len(outcomes)
    failed = sum(1 for o in outcomes if o.failures)
    out.write(f"{'all':18} {total:7} {sum(r[1] for r in rows.values()):8} {failed:9}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=21, help="the master seed: it gives every trial's seed")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="start no trial after this many seconds")
    parser.add_argument("--quick", action="store_true", help="short runs, no fault that waits out an expiry (CI)")
    parser.add_argument("--only", type=lambda text: text.split(","), help="only these faults (comma-separated)")
    parser.add_argument("--no-redis", action="store_true", help="no trial through Redis")
    parser.add_argument("--trial", type=int, help="replay the trial of this seed alone")
    parser.add_argument("--dry-run", action="store_true", help="print what the trials are, run nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per trial")
    args = parser.parse_args(argv)
    for name in args.only or []:
        if name not in FAULTS:
            parser.error(f"--only: no fault {name!r}; the faults are {', '.join(FAULTS)}")
    has_redis = not args.no_redis and shutil.which("redis-server") is not None and _redis_client()
    if not has_redis and not args.no_redis:
        print("chaos: no redis-server or Redis client here: local trials only", file=sys.stderr)
    seeds = [args.trial] if args.trial is not None else trial_seeds(args.seed, args.trials)
    trials = [draw_trial(seed, args.quick, bool(has_redis), args.only) for seed in seeds]
    if args.dry_run:
        for trial in trials:
            print(f"trial {trial.seed}: {trial.describe()}: {shlex.join(trial.command('S', 'R'))}")
        return 0
    print(f"chaos: {len(trials)} trials, seed {args.seed if args.trial is None else args.trial}"
          f"{', quick' if args.quick else ''}, time limit {args.time_limit:g}s", flush=True)  # fmt: skip
    redis = Redis() if has_redis and any(t.broker for t in trials) else None
    outcomes: list[Outcome] = []
    began = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="smsbatch-chaos-")
    # Ctrl-C or SIGTERM (even where a background shell ignores SIGINT): the trial
    # in hand is cleaned up, and the table of those done is still printed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for number, trial in enumerate(trials, 1):
            if time.monotonic() - began > args.time_limit:
                print(f"chaos: time limit reached after {number - 1} trials", flush=True)
                break
            try:
                outcome = run_trial(trial, redis, workdir)
            except KeyboardInterrupt:
                print(f"chaos: stopped during trial {number}; the table shows the {number - 1} before", flush=True)
                break
            outcomes.append(outcome)
            if args.verbose or outcome.failures:
                verdict = "held" if not outcome.failures else "FAILED"
                print(f"trial {number} (seed {trial.seed}) {trial.describe()}: {verdict} in {outcome.seconds:.1f}s",
                      flush=True)  # fmt: skip
                if outcome.failures and args.verbose:
                    print_failure(outcome, args)  # as it happens, too: a long run may be cut short
    finally:
        if redis is not None:
            redis.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(outcomes, sys.stdout)
    failed = [o for o in outcomes if o.failures]
    held = len(outcomes) - len(failed)
    print(f"{held} of {len(outcomes)} trials held ({held / len(outcomes):.1%}) in {time.monotonic() - began:.0f}s"
          if outcomes else "no trial ran")  # fmt: skip
    for outcome in failed:
        print_failure(outcome, args)
    return 1 if failed or not outcomes else 0


def print_failure(outcome: Outcome, args: argparse.Namespace) -> None:
    trial = outcome.trial
    print(f"\nFAILED trial {trial.seed}: {trial.describe()}")
    for problem in outcome.failures:
        print(f"  - {problem}")
    print(f"  replay: {replay_command(trial, args)}")
    print(f"  smsbatch: {shlex.join(trial.command('summary.json', 'recipients.csv'))}")
    for senders in trial.workers:
        print(f"  worker: smsbatch worker --broker URL --once {' '.join('--sender ' + s for s in senders)}", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _redis_client() -> bool:
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
