"""Runs that end badly: killed senders and producers, signals, a killed main
process, an exception in a child. Each checks the exit status, the summary,
that every message is accounted for, and (from /proc) that no process is left."""

import io
import json
import os
import signal
import time

import pytest
from conftest import process_state, wait_until, wait_until_gone

from smsbatch.cli import main
from smsbatch.realtime.sender import SenderEngine

pytestmark = pytest.mark.timeout(60)


def test_a_killed_sender_loses_nothing(processes):
    run = processes.run(
        "--messages",
        "1500",
        "--sender",
        "0.01:0.1",
        "--sender",
        "0.01:0.1",
        "--sender",
        "0.01:0.1",
        "--speed",
        "10",
        "--seed",
        "1",
        "--log",
        "INFO",
        "--no-progress",
    )
    run.wait_for_children(4)
    run.wait_for_line(r"^INFO message \d+ .* by sender 2 ")  # sender 2 has work in hand
    os.kill(run.pid_of("smsbatch: sender 2"), signal.SIGKILL)
    run.finish().accounted()
    s = run.summary
    assert run.status == 0
    assert s["unsent"] == 0
    assert s["lost_senders"] == 1
    assert s["senders"][1]["state"] == "died (SIGKILL)"
    assert "sender 2 died (SIGKILL);" in run.err
    assert "re-queued" in run.err
    # Every message counted exactly once: once in the per-sender attempts, once in the log.
    assert sum(x["attempts"] for x in s["senders"]) == 1500
    ids = [int(line.split()[2]) for line in run.err.splitlines() if line.startswith("INFO message ")]
    assert sorted(ids) == list(range(1500))


def test_senders_killed_while_waiting_for_work_do_not_lock_the_queue(processes):
    # Three fast senders finish their share and wait in get(); one of them holds
    # the queue's read lock while it waits. Kill all three: the slow sender must
    # still be able to take its Stop, so the runner has to release the lock.
    run = processes.run(
        "--messages",
        "20",
        "--sender",
        "0.01:0",
        "--sender",
        "0.01:0",
        "--sender",
        "0.01:0",
        "--sender",
        "2:0:distribution=constant:name=slow",
        "--seed",
        "8",
    )
    run.wait_for_children(4, prefix="smsbatch: sender")  # the producer may be done already
    fast = [run.pid_of(f"smsbatch: sender {n} ") for n in (1, 2, 3)]
    run.wait_for_progress(19)  # all but the slow sender's one message: the fast ones are done
    wait_until(lambda: all(process_state(pid) == "S" for pid in fast))  # and asleep, waiting for work
    for n in (1, 2, 3):
        os.kill(run.pid_of(f"smsbatch: sender {n} "), signal.SIGKILL)
    run.finish().accounted()
    assert run.status == 0
    assert run.summary["sent"] == 20
    assert run.summary["senders"][3]["state"] == "done"


def test_every_sender_killed_ends_the_run_at_once(processes):
    # How fast it ends ("well under 2 s") is a row of scripts/benchmark.sh.
    run = processes.run(
        "--messages", "5000", "--sender", "0.05:0", "--sender", "0.05:0", "--speed", "10", "--seed", "2"
    )
    run.wait_for_children(3)
    run.wait_for_progress()
    for title, pid in run.children.items():
        if "sender" in title:
            os.kill(pid, signal.SIGKILL)
    run.finish(timeout=20)  # a hang, not a slow end, fails here
    run.accounted()
    assert run.status == 1
    assert run.summary["unsent"] > 0
    assert run.summary["lost_senders"] == 2
    assert run.summary["stopped_by"] == "every sender died"


def test_a_killed_producer_does_not_hang_the_run(processes):
    run = processes.run(
        "--messages",
        "200000",
        "--sender",
        "0.0001:0",
        "--sender",
        "0.0001:0",
        "--speed",
        "1",
        "--seed",
        "3",
    )
    run.wait_for_children(3)
    run.wait_for_progress()
    os.kill(run.pid_of("smsbatch: producer"), signal.SIGKILL)
    run.finish().accounted()
    assert run.status == 1
    assert run.summary["unsent"] > 0
    assert "producer died (SIGKILL)" in run.err


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("times", [1, 2])
def test_signals_stop_warm_then_cold(processes, signum, status, times):
    # How fast it stops ("under 3 s") is a row of scripts/benchmark.sh.
    run = processes.run(
        "--messages", "5000", "--sender", "0.5:0.1", "--sender", "0.5:0.1", "--speed", "5", "--seed", "4"
    )
    run.wait_for_children(3)
    run.wait_for_progress()
    for _ in range(times):
        os.killpg(run.proc.pid, signum)  # like Ctrl-C in a terminal: the whole group
        time.sleep(0.05)  # the behaviour under test: two presses of Ctrl-C, 50 ms apart
    run.finish(timeout=20)  # a hang, not a slow stop, fails here
    run.accounted()
    assert run.status == status
    assert run.summary["unsent"] > 0
    assert run.summary["exit_status"] == status
    # A cold stop ends the children itself: none of them died (was: "died (SIGKILL)", counted lost, re-queued).
    assert "died" not in run.err
    assert not any(s["state"].startswith("died") for s in run.summary["senders"])


def test_sigterm_to_the_main_process_only(processes):
    run = processes.run("--messages", "5000", "--sender", "0.5:0.1", "--speed", "5", "--seed", "5")
    run.wait_for_children(2)
    run.wait_for_progress()
    run.proc.send_signal(signal.SIGTERM)
    run.finish().accounted()
    assert run.status == 143


def test_children_die_with_a_killed_main_process(processes):
    run = processes.run("--messages", "100000", "--sender", "0.5:0", "--sender", "0.5:0", "--speed", "1", "--seed", "6")
    children = run.wait_for_children(3)
    run.proc.kill()
    run.proc.wait(timeout=10)
    assert not wait_until_gone(children.values(), seconds=5)


def _explode_in_sender_2(real_finish):
    def finish(self, *attempt):
        if self.index == 1 and self.stats.attempts >= 20:
            raise RuntimeError("gateway exploded")
        return real_finish(self, *attempt)

    return finish


def test_an_exception_in_a_sender_is_shown_once_and_its_work_redone(tmp_path, monkeypatch, no_children_left):
    # The patch is made before the fork, so the sender processes inherit it.
    monkeypatch.setattr(SenderEngine, "_finish", _explode_in_sender_2(SenderEngine._finish))
    out, err = io.StringIO(), io.StringIO()
    summary = tmp_path / "s.json"
    status = main(
        [
            "--messages",
            "2000",
            "--sender",
            "0.01:0",
            "--sender",
            "0.01:0",
            "--speed",
            "50",
            "--seed",
            "7",
            "--no-progress",
            "--summary-json",
            str(summary),
        ],
        stdout=out,
        stderr=err,
    )
    data = json.loads(summary.read_text())
    assert status == 0
    assert data["sent"] == 2000
    assert data["lost_senders"] == 1
    assert err.getvalue().count("RuntimeError: gateway exploded") == 1
    assert "Traceback" in err.getvalue()  # the child's own traceback, shown once
    assert "sender 2 died (exception)" in err.getvalue()
    assert data["senders"][1]["state"] == "died (exception)"
