"""The failures the chaos harness (scripts/chaos.py) found, each pinned down:
a stop signal at any moment, replications left running by a killed main
process, a worker whose run vanished from Redis, derived figures that counted
duplicates, healthy senders ended for the main process's own lateness."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from conftest import (
    Run,
    WorkerProc,
    check_accounts,
    child_pids,
    communicate_or_kill,
    start,
    wait_until,
    wait_until_gone,
)

from smsbatch.broker.keys import RunKeys
from smsbatch.cli import make_source
from smsbatch.config import parse_settings
from smsbatch.core.clock import FakeClock
from smsbatch.core.model import RETRY, SENT, Claimed, Done, Progress
from smsbatch.core.stats import Stats, bucket_of
from smsbatch.present.monitor import Monitor, NullDisplay
from smsbatch.realtime.accounts import Accounts
from smsbatch.realtime.memory import MemoryBackend
from smsbatch.realtime.retries import Retry
from smsbatch.realtime.runner import Runner
from smsbatch.replications import _report

pytestmark = pytest.mark.timeout(60)


def _handler_installed(pid: int, sig: int) -> bool:
    """/proc says `pid` catches `sig` (SigCgt): its Python handler is in place."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            caught = next(line for line in handle if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught.split()[1], 16) & (1 << (sig - 1)))


def _smsbatch(tmp_path, *argv):
    summary = tmp_path / "summary.json"
    command = [sys.executable, "-m", "smsbatch", *argv, "--no-progress", "--summary-json", str(summary)]
    return start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), summary


# ---- a stop signal at any moment: 130 or 143, one line, the summary file ----


def test_sigterm_while_waiting_for_a_fifo_writer_writes_the_summary(tmp_path):
    fifo = tmp_path / "numbers.fifo"
    os.mkfifo(fifo)
    proc, summary = _smsbatch(tmp_path, "--recipients", str(fifo), "--sender", "0:0")
    assert "reading numbers from" in proc.stderr.readline()  # it waits in open(), before the run
    proc.send_signal(signal.SIGTERM)
    out, err = communicate_or_kill(proc, 20)
    assert proc.returncode == 143  # was -15: killed, no summary, before the handlers came
    assert out == ""
    assert err == "smsbatch: stopped by SIGTERM before the run started; nothing was sent\n"
    s = json.loads(summary.read_text())
    assert (s["messages"], s["unsent"], s["exit_status"]) == (0, 0, 143)
    assert "the recipients were not read" in s["stopped_by"]


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_the_broker_is_checked_leaves_every_message_unsent(tmp_path, sig, status):
    with socket.socket() as silent:  # accepts, never answers: the check waits
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(20)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        proc, summary = _smsbatch(tmp_path, "-n", "40", "--broker", url, "--sender", "0:0")
        connection, _ = silent.accept()  # it is connecting; held open (closed, the client would see an error)
        proc.send_signal(sig)
        out, err = communicate_or_kill(proc, 20)
        connection.close()
    assert proc.returncode == status
    assert out == ""
    assert err.count("\n") == 1
    assert "before the run started; nothing was sent" in err
    assert "Traceback" not in err
    s = json.loads(summary.read_text())
    check_accounts(s)
    assert (s["messages"], s["sent"], s["failed"], s["unsent"]) == (40, 0, 0, 40)
    assert s["senders"][0]["state"] == "not started"


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_as_soon_as_smsbatch_runs_ends_with_its_summary(tmp_path, sig, status):
    proc, summary = _smsbatch(tmp_path, "-n", "300", "--speed", "20", "--seed", "3")
    wait_until(lambda: _handler_installed(proc.pid, signal.SIGTERM), seconds=20, poll=0.001)
    proc.send_signal(sig)  # while the modules load, long before the run
    _, err = communicate_or_kill(proc, 20)
    assert proc.returncode == status
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    s = json.loads(summary.read_text())
    check_accounts(s)
    assert s["messages"] == 300
    assert s["exit_status"] == status


# ---- replications die with the main process, whatever kills it ----


def _titles(pids) -> dict[int, str]:
    titles = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                titles[pid] = handle.read().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
    return titles


def test_a_killed_main_process_takes_its_replications_with_it(tmp_path):
    proc, summary = _smsbatch(
        tmp_path, "-n", "4000", "--sender", "0.05:0.1", "--speed", "10", "--replications", "3", "--jobs", "2"
    )

    def both_running():  # each pool process has started its replication's sender
        tree = child_pids(proc.pid)
        senders = [pid for pid, title in _titles(tree).items() if title.startswith("smsbatch: sender")]
        return tree if len(senders) >= 2 else None

    tree = wait_until(both_running, seconds=30)
    proc.kill()
    proc.wait()
    left = wait_until_gone(tree, seconds=5)
    assert not left, f"outlived the main process: {_titles(left)}"
    assert not summary.exists()  # killed outright: nothing was written, and nothing ran on to write it


# ---- a worker whose run is gone from Redis says so and leaves ----


def test_a_worker_blocked_on_a_run_that_vanishes_leaves_in_one_line(tmp_path, redis_url):
    redis = pytest.importorskip("redis")

    # Two senders there, one message: one sender holds it, the other waits in a blocking XREADGROUP.
    worker = WorkerProc(redis_url, "--sender", "50:0", "--sender", "50:0", "--once")
    run = Run(tmp_path, "--broker", redis_url, "-n", "1", "--no-local-senders", "--no-progress", "--seed", "5")
    keys = RunKeys(run.wait_for_line(r"^smsbatch: run (\S+) on ", stream="out")[1])
    wait_until(worker.senders_holding)
    os.killpg(run.proc.pid, signal.SIGKILL)
    run.proc.wait(10)
    # What the keys' expiry does, at once: Redis 7 wakes a blocked XREADGROUP
    # with "UNBLOCKED the stream key no longer exists".
    redis.Redis.from_url(redis_url).delete(*keys.all())
    worker.finish(timeout=20)
    assert worker.status == 0
    assert "Traceback" not in worker.out + worker.err
    assert "UNBLOCKED" not in worker.out + worker.err
    assert f"run {keys.run_id} is gone from Redis" in worker.out
    assert worker.out.count(f"run {keys.run_id} is gone") == 1


# ---- derived figures count a message once, from the ledger ----


def _progress(sender: int, ids: range, ends: list[float]) -> Progress:
    """A report from a transport that keeps the claims (Redis): messages `ids` sent, at `ends`."""
    stats = Stats()
    for end in ends:
        stats.record(0.1, True, end)
    ended = tuple((end, bucket_of(0.1), SENT, 1) for end in ends)
    return Progress(sender, (Done(None, ids, bytes([SENT]) * len(ids)),), stats, ended=ended)


def test_a_redelivered_batch_counts_once_in_the_timeline_reach_and_deadline():
    settings = parse_settings(["-n", "4", "--sender", "0.1:0", "--sender", "0.1:0", "--deadline", "0.45"])
    source, _ = make_source(settings)
    accounts = Accounts(settings, source, tracks_claims=False)
    for spec in settings.senders:
        accounts.add_sender(spec.name, spec)
    # Sender 1 sends messages 0 and 1, then goes silent; sender 2 takes the
    # batch over and sends all four: 0 and 1 again (duplicates), 2 and 3 first.
    accounts.progress(_progress(0, range(0, 2), [0.1, 0.2]))
    accounts.progress(_progress(1, range(0, 4), [0.3, 0.4, 0.5, 0.6]))
    snap = accounts.snapshot(["done", "done"], 1.0, None, 0, 0.0)
    assert (snap.sent, snap.duplicates) == (4, 2)
    timeline = snap.timeline
    assert timeline is not None
    last = dict(zip(timeline["columns"], timeline["rows"][-1], strict=True))
    assert last["sent"] == 4  # was 6: the duplicates counted again
    # Messages 2 and 3 were first sent at 0.5 and 0.6: the 100% and deadline figures are theirs.
    assert snap.reach["50"] == pytest.approx(0.2, abs=0.01)
    assert snap.reach["100"] == pytest.approx(0.6, abs=0.01)  # was 0.4
    assert snap.within_deadline == 0.5  # 0 and 1 by 0.45 s; was 1.0
    # Attempts stay every sender's own: 2 + 4, the duplicates included.
    attempts = [
        sum(row[timeline["columns"].index(f"{n}:attempts")] for row in timeline["rows"]) for n in snap_names(snap)
    ]
    assert attempts == [2, 4]


def snap_names(snap) -> list[str]:
    return [view.name for view in snap.senders]


# ---- a runner that falls behind never ends a sender for its own lateness ----


def test_a_paused_main_process_ends_no_healthy_sender(processes):
    run = processes.run(
        *("-n", "900", "--sender", "0.05:0", "--sender", "0.05:0", "--sender", "0.05:0"),
        *("--speed", "10", "--claim-after", "1", "--seed", "9"),
    )
    run.wait_for_children(4)
    run.wait_for_progress(100)  # every sender at work, and beating
    os.kill(run.proc.pid, signal.SIGSTOP)  # the main process only: its senders go on, their reports wait
    time.sleep(1.5)  # the fault itself: a main process that does not look for 1.5 s (> --claim-after)
    os.kill(run.proc.pid, signal.SIGCONT)
    run.finish().accounted()
    assert run.status == 0
    assert "silent" not in run.err  # was: all three "silent for 1s: counted lost, ended", exit 1
    assert (run.summary["unsent"], run.summary["lost_senders"]) == (0, 0)


def test_senders_slow_to_start_are_not_taken_for_silent():
    """Silence counts from a sender's start, not the run's: forking 1,024 senders
    on a busy machine took 50 s, and the last ones were ended as silent."""
    settings = parse_settings(["--no-progress", "--seed", "3", "-n", "100", "--sender", "1:0", "--sender", "1:0"])
    settings = replace(settings, claim_after=1.0)
    source, _ = make_source(settings)
    clock = FakeClock(100.0)
    backend = MemoryBackend(settings, source)
    runner = Runner(settings, source, Monitor(NullDisplay(io.StringIO()), 1.0, clock), backend, clock, [])
    begin, events, late = backend.begin, backend.events, []

    def slow_begin():
        begin()
        clock.advance(30.0)  # the last fork returns 30 s after the first
        late.append(backend.said.pop())  # and that sender has not said Ready yet

    looks = []

    def then_ready(timeout):
        found = events(timeout)
        looks.append(timeout)
        if late and len(looks) > 1:  # a look later, its Ready comes
            found.append(late.pop())
        return found

    backend.begin, backend.events = slow_begin, then_ready
    runner.start()
    while not runner.over():
        clock.advance(0.01)
        runner.step(clock.now())
    s = runner.finish().snapshot
    assert [view.state for view in s.senders] == ["done", "done"]  # was: sender 2 "lost (silent for 30s)"
    assert (s.sent, s.lost_senders) == (100, 0)


def test_a_retry_reported_twice_counts_as_a_duplicate_so_every_attempt_is_counted_once():
    """A sender stopped mid-batch and continued after the batch was redelivered
    reports retries another sender reported already: attempts == sent + failed +
    retried + duplicates must still hold (it fell short by the retries)."""
    settings = parse_settings(["-n", "2", "--sender", "0.1:0.5", "--sender", "0.1:0.5", "--max-retries", "2"])
    source, _ = make_source(settings)
    accounts = Accounts(settings, source, tracks_claims=False)
    for spec in settings.senders:
        accounts.add_sender(spec.name, spec)

    def retried(sender: int) -> Progress:
        stats = Stats()
        stats.record(0.1, False, 0.1)
        done = (Done(None, (0,), bytes([RETRY])),)
        return Progress(sender, done, stats, ((0, "+12025550143", 2, 0.2),), ended=((0.1, bucket_of(0.1), RETRY, 1),))

    assert len(accounts.progress(retried(0))) == 1  # the retry is scheduled once...
    assert accounts.progress(retried(1)) == []  # ...and its repeat is a duplicate
    snap = accounts.snapshot(["done", "done"], 1.0, None, 0, 0.0)
    assert snap.stats.attempts == 2
    assert (snap.sent, snap.failed, snap.retried, snap.duplicates) == (0, 0, 1, 1)  # duplicates was 0
    timeline = snap.timeline
    assert timeline is not None
    assert timeline["rows"][-1][timeline["columns"].index("retried")] == 1


def test_a_batch_requeued_after_a_stall_can_still_be_claimed_by_its_old_key():
    """A sender SIGSTOPped while it held the work queue's read lock stalls the
    run: the open messages are queued again. The batches on the queue were not
    lost after all: once the stopped sender is ended, a sender takes one and
    claims it by its old key (a KeyError there ended the run: internal error,
    exit 1, no summary file)."""
    settings = parse_settings(["-n", "4", "--sender", "0.1:0.5", "--sender", "0.1:0.5", "--max-retries", "1"])
    source, _ = make_source(settings)
    accounts = Accounts(settings, source, tracks_claims=True)
    for spec in settings.senders:
        accounts.add_sender(spec.name, spec)
    accounts.ledger.record(range(0, 4), bytes([SENT, SENT, RETRY, RETRY]))  # batch 0's first attempts
    retries = accounts.retry_batch([Retry(0.2, 2, "+12025550143", 2), Retry(0.2, 3, "+12025550144", 2)])
    again = accounts.lost_in_transit()  # the stall: the retry batch is made again, under a new key
    assert [list(batch.ids) for batch in again] == [[2, 3]]
    accounts.claim(Claimed(0, retries.key))  # the old one, taken off the queue at last
    accounts.claim(Claimed(1, again[0].key))
    for sender, key in ((0, retries.key), (1, again[0].key)):
        stats = Stats()
        stats.record(0.1, True, 0.3)
        stats.record(0.1, True, 0.3)
        ended = ((0.3, bucket_of(0.1), SENT, 2),)
        accounts.progress(Progress(sender, (Done(key, range(2), bytes([SENT, SENT])),), stats, ended=ended))
    ledger = accounts.ledger
    assert (ledger.sent, ledger.unsent, ledger.duplicates) == (4, 0, 2)


def test_replications_stopped_before_any_finished_leave_a_whole_summary():
    settings = parse_settings(["-n", "70", "--replications", "3", "--sender", "0.1:0.2", "--seed", "8"])
    top = _report(settings, [], io.StringIO(), [signal.SIGTERM])
    check_accounts(top)  # was a dozen keys: no attempts, senders, reach_s, ...
    assert (top["messages"], top["unsent"], top["exit_status"]) == (70, 70, 143)
    assert top["senders"][0]["state"] == "not started"
    assert top["reach_s"] == {"50": None, "90": None, "99": None, "100": None}


class _PagedResults:
    """A results stream that holds `count` beats and serves a page at a time, as XREAD COUNT does."""

    def __init__(self, count: int, sender: str, page: int) -> None:
        from smsbatch.broker.codec import Alive, report_fields

        fields = {
            key.encode(): value.encode() for key, value in report_fields(Alive(sender)).items()
        }  # as Redis gives them
        self.entries = [(f"{i + 1}-0".encode(), fields) for i in range(count)]
        self.page = page

    def read_results(self, after, block_ms):
        after = int(after.split(b"-")[0]) if isinstance(after, bytes) else 0
        return self.entries[after : after + self.page]

    def trim_results(self, upto) -> None:
        pass


def test_a_coordinator_behind_by_pages_of_reports_reads_them_all_in_one_look():
    """Reports waiting on the results stream beyond its first page were read a
    look later: a remote sender whose beat was on the next page looked silent."""
    pytest.importorskip("redis")
    from smsbatch.broker.coordinator import RedisBackend
    from smsbatch.broker.keys import consumer_name
    from smsbatch.broker.store import READ_COUNT

    settings = parse_settings(["--broker", "redis://127.0.0.1:9/0", "--sender", "0.1:0", "-n", "10"])
    source, _ = make_source(settings)
    backend = RedisBackend(settings, source, "r1", give_up=lambda: True)
    backend.store = _PagedResults(2 * READ_COUNT + 500, consumer_name(0), READ_COUNT)  # type: ignore[assignment]
    assert backend._read_results(None)
    assert len(backend.said) == 2 * READ_COUNT + 500  # was READ_COUNT: the rest waited for the next look
    backend.supervisor.close()
