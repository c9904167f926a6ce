"""A sender that hangs (SIGSTOP: stopped, deadlocked, or a gateway that never
answers) is counted lost after --claim-after seconds of silence while the run
waits on it, ended, and its work goes to the others: the run never hangs."""

import os
import signal

import pytest
from conftest import process_state, wait_until

pytestmark = pytest.mark.timeout(60)


def test_a_stopped_sender_holding_work_is_lost_and_its_work_sent_by_the_others(processes):
    run = processes.run(
        "--messages",
        "300",
        "--sender",
        "0.2:0:window=5",
        "--sender",
        "0.2:0:window=5",
        "--speed",
        "10",
        "--seed",
        "3",
        "--claim-after",
        "1",
    )
    run.wait_for_children(3)
    run.wait_for_progress(20)  # both senders busy (the first 10 sends done): every slot holds a message
    os.kill(run.pid_of("smsbatch: sender 2"), signal.SIGSTOP)
    run.finish().accounted()
    s = run.summary
    assert run.status == 0
    assert s["sent"] == 300
    assert s["unsent"] == 0
    assert s["lost_senders"] == 1
    assert s["senders"][1]["state"].startswith("lost (silent for ")
    assert s["requeued"] > 0
    assert "sender 2 is silent for" in run.err


def test_stopped_idle_senders_holding_the_queues_lock_do_not_hang_the_end(processes):
    # Three fast senders finish their share and wait for work, one of them
    # holding the queue's read lock; stopped, they would keep the slow sender
    # from its Stop and the run from its end.
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
        "--claim-after",
        "1",
    )
    run.wait_for_children(4, prefix="smsbatch: sender")
    fast = [run.pid_of(f"smsbatch: sender {n} ") for n in (1, 2, 3)]
    run.wait_for_progress(19)  # the fast ones are done (the slow one is mid-send with the last)
    wait_until(lambda: all(process_state(pid) == "S" for pid in fast))  # and asleep, waiting for work
    for n in (1, 2, 3):
        os.kill(run.pid_of(f"smsbatch: sender {n} "), signal.SIGSTOP)
    run.finish().accounted()
    s = run.summary
    assert run.status == 0
    assert s["sent"] == 20
    assert s["senders"][3]["state"] == "done"
    assert all(x["state"].startswith("lost (silent for ") for x in s["senders"][:3])


def test_a_slow_send_is_not_taken_for_a_hang(processes):
    # One send of 2 real seconds, with --claim-after 1: the sender beats mid-send.
    run = processes.run(
        "--messages",
        "1",
        "--sender",
        "2:0:distribution=constant",
        "--seed",
        "1",
        "--claim-after",
        "1",
        "--no-progress",
    ).finish()
    run.accounted()
    assert run.status == 0
    assert run.summary["lost_senders"] == 0
    assert run.summary["senders"][0]["state"] == "done"


def test_a_stopped_sender_ended_by_a_warm_stop_reads_lost_not_done(processes):
    run = processes.run(
        "--messages",
        "600",
        "--sender",
        "0.2:0:window=5",
        "--sender",
        "0.2:0:window=5",
        "--speed",
        "5",
        "--seed",
        "3",
    )  # --claim-after stays 10 s
    run.wait_for_children(3)
    run.wait_for_progress(20)  # both senders busy
    stopped = run.pid_of("smsbatch: sender 2")
    os.kill(stopped, signal.SIGSTOP)
    wait_until(lambda: process_state(stopped) == "T")  # stopped, before the warm stop begins
    os.kill(run.proc.pid, signal.SIGTERM)
    run.finish().accounted()
    s = run.summary
    assert run.status == 143
    assert s["unsent"] > 0
    assert s["senders"][0]["state"] == "done"
    assert s["senders"][1]["state"].startswith("lost (silent for ")
