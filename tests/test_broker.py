"""The Redis Streams backend: the ledger's broker path without a server (the
wire format is in test_broker_codec.py), then whole runs against a real redis-server: local and
remote senders, a worker killed or leaving mid-run, a worker joining mid-run,
two runs on one Redis, Redis stopped mid-run."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import Run, WorkerProc, child_pids, wait_until

from smsbatch.config import parse_settings
from smsbatch.core.ledger import Ledger
from smsbatch.core.model import FAILED, RETRY, SENT
from smsbatch.core.sender_model import SenderModel

redis = pytest.importorskip("redis", reason="the Redis client is not installed")
broker_keys = pytest.importorskip("smsbatch.broker.keys")
producer = pytest.importorskip("smsbatch.broker.producer")


# ---- no server needed ----


def test_ledger_counts_each_message_id_once():
    ledger = Ledger(10)
    ledger.record(range(0, 5), bytes([SENT, SENT, FAILED, RETRY, SENT]))
    ledger.record(range(0, 5), bytes([FAILED] * 5))  # a re-delivered batch, reported again
    ledger.record((3, 9), bytes([SENT, SENT]))
    # 3 was open (RETRY) when the second report came: its FAILED counts.
    assert (ledger.sent, ledger.failed, ledger.unsent) == (4, 2, 4)
    assert ledger.duplicates == 5  # 0, 1, 2, 4 the second time, 3 the third
    assert ledger.retry(5, 2)
    assert not ledger.retry(5, 2)
    assert not ledger.retry(0, 2)  # no retry for a counted message
    assert ledger.retried == 1


# ---- against a real redis-server ----

pytestmark = pytest.mark.timeout(60)
FAST = ("--speed", "10", "--no-progress", "--claim-after", "1")


def runs_on(url):
    return redis.Redis.from_url(url).zrange(broker_keys.RUNS_KEY, 0, -1)


def test_local_and_remote_senders_share_a_run(tmp_path, redis_url, no_children_left):
    worker = WorkerProc(redis_url, "--sender", "0.01:0.1:name=far", "--once")
    run = Run(
        tmp_path,
        "--broker",
        redis_url,
        "--messages",
        "2000",
        "--sender",
        "0.01:0.1",
        "--max-retries",
        "1",
        "--seed",
        "3",
        *FAST,
    )
    run.finish().accounted()
    worker.finish()
    s = run.summary
    assert run.status == 0
    assert s["unsent"] == 0
    assert s["run_id"]
    assert worker.status == 0
    assert f"joined run {s['run_id']}" in worker.out
    names = [x["name"] for x in s["senders"]]
    assert names[0] == "sender 1"
    assert names[1].startswith("far@")
    assert all(x["attempts"] > 0 and x["state"] == "done" for x in s["senders"])
    # Against the model: a 10% failure rate fails about 200 first attempts (sd 13),
    # and their retries fail about 20 (sd 4.4); every attempt is one sender's.
    assert 150 < s["retried"] < 250
    assert 5 < s["failed"] < 40
    assert sum(x["attempts"] for x in s["senders"]) == s["sent"] + s["failed"] + s["retried"] + s["duplicates"]
    assert "far@" in run.err
    assert "joined from" in run.err
    assert s["retried"] > 0
    assert s["attempts"] == 2000 + s["retried"]
    # After the run: the work stream is empty, the keys expire, the run is unlisted.
    client = redis.Redis.from_url(redis_url)
    run_keys = broker_keys.RunKeys(s["run_id"])
    # (a Stop a sender did not need, having read the state first, may be left)
    assert all(b"stop" in fields for _, fields in client.xrange(run_keys.work))
    assert client.xlen(run_keys.results) <= 1
    assert all(0 < client.ttl(key) <= broker_keys.ENDED_TTL for key in run_keys.all())
    assert s["run_id"].encode() not in runs_on(redis_url)


def test_a_killed_worker_loses_nothing(tmp_path, redis_url, no_children_left):
    worker = WorkerProc(redis_url, "--sender", "0.02:0.05", "--sender", "0.02:0.05", "--once")
    run = Run(tmp_path, "--broker", redis_url, "--messages", "6000", "--sender", "0.01:0.05", "--seed", "4", *FAST)
    worker.freeze_when(lambda: worker.senders_holding(finished_one=True) == 2)  # both reported, and hold more
    worker.kill_group(signal.SIGKILL)
    worker.finish()
    run.finish(timeout=45).accounted()
    s = run.summary
    assert run.status == 0
    assert s["unsent"] == 0
    assert s["sent"] + s["failed"] == 6000
    assert s["lost_senders"] == 2
    assert s["redelivered"] > 0
    lost = [x for x in s["senders"] if x["state"].startswith("lost")]
    assert len(lost) == 2
    assert all(x["attempts"] > 0 for x in lost)
    assert "counted lost" in run.err


def test_a_worker_that_leaves_gives_its_work_back(tmp_path, redis_url, no_children_left):
    # Sends of 2 s real (20 s at x10) outlast the leaving grace second: they are given back.
    worker = WorkerProc(redis_url, "--sender", "20:0:window=5:name=slow", "--once")
    run = Run(tmp_path, "--broker", redis_url, "--messages", "1500", "--sender", "0.01:0", "--seed", "5", *FAST)
    wait_until(worker.senders_holding)  # sends in flight when it is told to leave
    worker.kill_group(signal.SIGTERM)
    worker.finish(timeout=10)
    run.finish().accounted()
    s = run.summary
    assert worker.status == 0
    assert "giving back" in worker.out
    assert run.status == 0
    assert s["unsent"] == 0
    assert s["sent"] == 1500
    slow = s["senders"][1]
    assert slow["state"].startswith("left (gave back ")
    assert slow["state"] != "left (gave back 0)"


def test_a_workers_sender_backs_off_as_the_coordinator_set(tmp_path, redis_url, no_children_left):
    """--retry-backoff reaches `smsbatch worker` (it once backed off 1 s whatever was set). One
    message, an instant sender that always fails, one retry: the run ends when the retry does,
    at the model's retry delay for that sender, in simulated time to the bit (a retry starts at
    its model time; lateness is counted apart, as lag). Speed 20: 10 to 30 simulated seconds
    (a jitter of 0.5 to 1.5 times 20 s) take at most 1.5 s."""
    worker = WorkerProc(redis_url, "--sender", "0:1:distribution=constant:name=far", "--once")
    argv = ("--messages", "1", "--max-retries", "1", "--retry-backoff", "20", "--seed", "5", "--speed", "20")
    run = Run(tmp_path, "--broker", redis_url, "--no-local-senders", *argv, "--no-progress", "--claim-after", "1")
    run.finish().accounted()
    worker.finish()
    s = run.summary
    assert (s["attempts"], s["retried"], s["failed"]) == (2, 1, 1)
    # The sender's draws are keyed by its consumer name: host/pid (its summary name, after
    # the @) and its number on the worker.
    consumer = s["senders"][0]["name"].split("@", 1)[1] + "/1"
    settings = parse_settings(["--sender", "0:1:distribution=constant", *argv])
    model = SenderModel(settings.senders[0], settings, consumer)
    assert s["sim_elapsed_s"] == model.retry_delay(1)
    assert 10.0 <= s["sim_elapsed_s"] <= 30.0


def test_a_slow_sender_elsewhere_does_not_sit_on_a_big_batch(tmp_path, redis_url, no_children_left):
    # Batches are sized for the fast local sender (1000 messages); the remote
    # one takes a second per message, so it must keep one and give the rest back
    # (sitting on a batch it would hold the 2 s run up for 1000 s).
    worker = WorkerProc(redis_url, "--sender", "1:0:distribution=constant:name=slow", "--once")
    run = Run(
        tmp_path,
        "--broker",
        redis_url,
        "--messages",
        "20000",
        "--sender",
        "0.0001:0",
        "--seed",
        "15",
        "--no-progress",
        "--claim-after",
        "1",
    )
    run.finish(timeout=50).accounted()
    worker.finish(timeout=10)
    s = run.summary
    assert run.status == 0
    assert s["sent"] == 20000
    slow = s["senders"][1]
    assert slow["name"].startswith("slow@")
    assert 1 <= slow["attempts"] <= 10


def test_a_worker_joins_mid_run(tmp_path, redis_url, no_children_left):
    run = Run(tmp_path, "--broker", redis_url, "--messages", "3000", "--sender", "0.05:0", "--seed", "6", *FAST)
    wait_until(run.senders_holding)  # the local one has work before the worker comes
    worker = WorkerProc(redis_url, "--sender", "0:0:name=quick", "--once")
    run.finish().accounted()
    worker.finish()
    s = run.summary
    assert run.status == 0
    assert s["sent"] == 3000
    quick = s["senders"][1]
    assert quick["name"].startswith("quick@")
    assert quick["attempts"] > 0
    assert s["senders"][0]["attempts"] > 0  # the local one worked before the worker came


def test_ctrl_c_on_the_coordinator_stops_the_workers_senders_too(tmp_path, redis_url, no_children_left):
    worker = WorkerProc(redis_url, "--sender", "0.5:0:window=10")  # serves run after run
    run = Run(tmp_path, "--broker", redis_url, "--messages", "5000", "--sender", "0.05:0", "--seed", "11", *FAST)
    wait_until(lambda: run.senders_holding() and worker.senders_holding(finished_one=True))  # both at work
    os.kill(run.proc.pid, signal.SIGINT)
    run.finish(timeout=20).accounted()
    s = run.summary
    assert run.status == 130
    assert 0 < s["sent"] < 5000
    assert s["unsent"] == 5000 - s["sent"]
    assert [x["state"] for x in s["senders"]] == ["done", "done"]  # both said goodbye
    assert s["senders"][1]["attempts"] > 0
    wait_until(lambda: not child_pids(worker.proc.pid))  # its sender left; the worker waits for the next run
    assert not child_pids(worker.proc.pid)
    assert worker.proc.poll() is None
    worker.kill_group(signal.SIGTERM)
    worker.finish(timeout=10)
    assert worker.status == 0
    assert worker.out.split("left run ", 1)[1].rstrip().endswith(f"waiting for a run on {redis_url}")


def test_workers_leave_a_run_whose_coordinator_died(tmp_path, redis_url, no_children_left):
    worker = WorkerProc(redis_url, "--sender", "0.5:0", "--once")
    run = Run(
        tmp_path,
        "--broker",
        redis_url,
        "--messages",
        "5000",
        "--sender",
        "0.5:0",
        "--broker-timeout",
        "1",
        "--seed",
        "13",
        *FAST,
    )
    run.proc.stdout.readline()
    keys = broker_keys.RunKeys(run.proc.stdout.readline().split()[2])
    wait_until(worker.senders_holding)  # the worker has joined the run
    os.killpg(run.proc.pid, signal.SIGKILL)  # the coordinator and its own children
    run.proc.wait(10)
    # The run's keys expire 1 + 5 s after the last renewal; scripts/benchmark.sh
    # checks the worker leaves within 10 s. Here only a hang fails.
    worker.finish(timeout=30)
    assert worker.status == 0
    assert f"left run {keys.run_id}" in worker.out
    client = redis.Redis.from_url(redis_url)

    def keys_left() -> dict[str, int]:
        """The run's keys still there, with their time to live in ms (-1: none; PTTL says -2 for a key gone)."""
        return {key: ttl for key in keys.all() if (ttl := client.pttl(key)) != -2}

    # A key a leaving sender re-made would have no time to live (-1) and stay for
    # ever; the run's own keys all go within their TTL (at most 6 s here).
    assert all(ttl >= 0 for ttl in keys_left().values()), keys_left()
    wait_until(lambda: not keys_left(), 10)


def test_two_runs_side_by_side_do_not_mix(tmp_path, redis_url, no_children_left):
    first = Run(
        tmp_path,
        "--broker",
        redis_url,
        "--messages",
        "2000",
        "--sender",
        "0.01:0.1",
        "--seed",
        "7",
        *FAST,
        summary="first.json",
    )
    second = Run(
        tmp_path,
        "--broker",
        redis_url,
        "--messages",
        "3000",
        "--sender",
        "0.01:0.2",
        "--sender",
        "0.02:0",
        "--seed",
        "8",
        *FAST,
        summary="second.json",
    )
    second.proc.stdout.readline()
    second_id = second.proc.stdout.readline().split()[2]  # "smsbatch: run ID on URL; ..."
    worker = WorkerProc(redis_url, "--run", second_id, "--sender", "0.01:0:name=far")
    for run, messages, senders in [(first, 2000, 1), (second, 3000, 3)]:
        run.finish().accounted()
        s = run.summary
        assert run.status == 0
        assert s["messages"] == messages
        assert s["unsent"] == 0
        assert len(s["senders"]) == senders
        assert s["duplicates"] == 0
        assert sum(x["attempts"] for x in s["senders"]) == messages
    assert second.summary["run_id"] == second_id != first.summary["run_id"]
    assert second.summary["senders"][2]["name"].startswith("far@")
    worker.finish()  # it served the run it was asked to, and left
    assert worker.status == 0
    assert f"joined run {second_id}" in worker.out


def test_streams_stay_short_however_long_the_run(tmp_path, no_children_left, private_redis):
    # Senders slower than the producer: the work stream fills up to its bound
    # (back-pressure), and the results stream is trimmed as it is read.
    client = redis.Redis.from_url(private_redis.url)
    run = Run(
        tmp_path,
        "--broker",
        private_redis.url,
        "--messages",
        "40000",
        "--sender",
        "0.001:0",
        "--sender",
        "0.001:0",
        "--seed",
        "12",
        "--no-progress",
    )
    longest = {"work": 0, "results": 0}
    stop_at = time.monotonic() + 2.0  # the behaviour under test: 2 s of a busy run, watched

    def ended_while_watched():  # one look at both streams (every 5 ms); Ctrl-C after 2 s
        nonlocal stop_at
        for key in client.keys("smsbatch:*:work") + client.keys("smsbatch:*:results"):
            kind = key.decode().rsplit(":", 1)[1]
            longest[kind] = max(longest[kind], client.xlen(key))
        if time.monotonic() > stop_at:
            os.kill(run.proc.pid, signal.SIGINT)
            stop_at = float("inf")
        return run.proc.poll() is not None

    wait_until(ended_while_watched, seconds=40, poll=0.005)
    run.finish().accounted()
    assert run.status == 130
    assert 0 < run.summary["sent"] < 40000
    assert producer.MAX_QUEUED * 0.9 <= longest["work"] <= producer.MAX_QUEUED + 1
    assert 0 < longest["results"] < 100


def test_redis_stopped_mid_run(tmp_path, no_children_left, private_redis):
    url = private_redis.url
    worker = WorkerProc(url, "--sender", "0.05:0", "--broker-timeout", "1")
    run = Run(
        tmp_path,
        "--broker",
        url,
        "--messages",
        "5000",
        "--sender",
        "0.05:0",
        "--broker-timeout",
        "1",
        "--seed",
        "9",
        *FAST,
    )
    wait_until(lambda: run.senders_holding(finished_one=True))  # a batch sent and reported
    wait_until(run.results_caught_up)  # and counted
    private_redis.stop()
    run.finish(timeout=30).accounted()
    worker.finish(timeout=30)
    s = run.summary
    assert run.status == 1
    assert 0 < s["sent"] < 5000
    assert s["unsent"] > 0
    assert "unreachable" in run.err
    assert "unreachable" in s["stopped_by"]
    assert worker.status == 1
    assert "unreachable" in worker.out


def test_redis_back_within_the_timeout(tmp_path, no_children_left, private_redis):
    run = Run(
        tmp_path,
        "--broker",
        private_redis.url,
        "--messages",
        "1500",
        "--sender",
        "0.02:0",
        "--sender",
        "0.02:0",
        "--broker-timeout",
        "20",
        "--seed",
        "10",
        *FAST,
    )
    wait_until(run.senders_holding)  # the run is under way
    private_redis.stop(save=True)  # it comes back with the run's streams
    run.wait_for_line("unreachable")  # the run has seen it gone
    private_redis.start()
    run.finish(timeout=45).accounted()
    s = run.summary
    assert run.status == 0
    assert s["sent"] == 1500
    assert s["unsent"] == 0
    assert "unreachable" in run.err
    assert "is back after" in run.err


def _progress_reports(client) -> int:
    """Progress reports the coordinator has had so far (it trims what it reads)."""
    total = 0
    for key in client.keys("smsbatch:*:results"):
        total += client.xinfo_stream(key)["entries-added"]
    return max(0, total - 2)  # the start entry and the sender's hello


def test_redis_back_without_the_runs_data(tmp_path, no_children_left, private_redis):
    # 400 batches of 50: the producer is still at work (held back) when Redis comes back empty
    run = Run(
        tmp_path,
        "--broker",
        private_redis.url,
        "--messages",
        "20000",
        "--sender",
        "0.02:0",
        "--broker-timeout",
        "20",
        "--seed",
        "14",
        *FAST,
    )
    client = redis.Redis.from_url(private_redis.url)
    wait_until(lambda: _progress_reports(client) >= 2, seconds=20)  # some messages sent, not all
    private_redis.stop()  # nothing saved: it comes back empty
    private_redis.start()
    run.finish(timeout=45).accounted()
    s = run.summary
    assert run.status == 1
    assert 0 < s["sent"] < 20000
    assert s["unsent"] == 20000 - s["sent"]
    assert "gone from Redis" in s["stopped_by"]
    assert "gone from Redis" in run.err
    assert s["produced"] is None  # the producer did not pretend to add to a stream that was gone


def test_bad_broker_input_starts_nothing(no_children_left):
    # (bad --broker values for a run are in test_config's table)
    for argv in (
        ["--broker", "redis://127.0.0.1:1/0"],
        ["worker"],
        ["worker", "--broker", "redis://x:6379/zero"],
        ["worker", "--broker", "redis://127.0.0.1:1/0"],
        ["worker", "--broker", "redis://127.0.0.1:1/0", "--sender", "1:2"],
        ["worker", "--broker", "redis://127.0.0.1:1/0", "--run", "zzz", "--once"],  # was: waited for it forever
    ):
        proc = subprocess.run([sys.executable, "-m", "smsbatch", *argv], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, argv
        assert proc.stdout == ""
        assert proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr
        assert "--broker" in proc.stderr or "--sender" in proc.stderr or "--run: must be a run's id" in proc.stderr


def test_redis_is_not_imported_without_a_broker(no_children_left):
    code = (
        "import sys, io; from smsbatch.cli import main; "
        "main(['-n', '20', '--sender', '0:0', '--no-progress'], io.StringIO(), io.StringIO()); "
        "print('redis' in sys.modules, any(name.startswith('smsbatch.broker') for name in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout.split() == ["False", "False"], proc.stderr
