"""Recipient lists from anywhere (a file, standard input, a pipe, a FIFO, a
process substitution): read once, in blocks, each number sent once."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import tracemalloc

import pytest
from conftest import communicate_or_kill, start

from smsbatch.core.phones import (
    NumberSet,
    PhoneError,
    PhonePool,
    read_recipients,
    recipients_is_stream,
)
from smsbatch.core.source import MessageSource

FIVE_WAYS = ["+1 202-555-0143", "(202) 555-0143", "202.555.0143", "+12025550143", "2025550143"]
# A header and a junk line (2 invalid), one number written five ways (4
# duplicates), two more numbers: 3 messages.
LIST = "phone,name\n" + "\n".join(FIVE_WAYS) + "\n+14155552671,Ann\n+447400123456\nnonsense\n"
DISTINCT = ["+12025550143", "+14155552671", "+447400123456"]


def smsbatch(tmp_path, recipients, **popen):
    """The real command, in its own process group (killed whole at teardown, pass or fail)."""
    summary = tmp_path / "summary.json"
    argv = [
        sys.executable,
        "-m",
        "smsbatch",
        "--recipients",
        recipients,
        "--sender",
        "0:0",
        "--no-progress",
        "--seed",
        "1",
        "--summary-json",
        str(summary),
    ]
    popen.setdefault("stdin", subprocess.DEVNULL)
    proc = start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return proc, summary


def kill_if_running(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def check_sent_once_each(status, out, err, summary):
    assert status == 0, err
    data = json.loads(summary.read_text())
    assert (data["messages"], data["sent"], data["duplicate_numbers"]) == (3, 3, 4)
    assert "3 messages to numbers from" in out
    assert "(2 invalid lines and 4 duplicate numbers skipped)" in out
    assert "Traceback" not in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["-", "/dev/stdin"])
def test_recipients_from_a_pipe_on_standard_input(tmp_path, path, no_children_left):
    # /dev/stdin used to be read twice: "3 messages", then the producer died.
    reader, writer = os.pipe()
    os.write(writer, LIST.encode())  # well within a pipe's 64 KiB
    os.close(writer)
    proc, summary = smsbatch(tmp_path, path, stdin=reader)
    os.close(reader)
    try:
        out, err = communicate_or_kill(proc, 50)
    finally:
        kill_if_running(proc)
    check_sent_once_each(proc.returncode, out, err, summary)
    assert "reading numbers from" in err


@pytest.mark.timeout(60)
def test_recipients_from_a_fifo_say_they_wait_then_are_sent(tmp_path, no_children_left):
    # A FIFO used to hang with nothing printed, and with 0 sent once written.
    fifo = tmp_path / "numbers.fifo"
    os.mkfifo(fifo)
    proc, summary = smsbatch(tmp_path, str(fifo))
    try:
        assert "reading numbers from" in proc.stderr.readline()  # before any writer came
        with open(fifo, "w") as writer:
            writer.write(LIST)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait()
    finally:
        kill_if_running(proc)
    check_sent_once_each(proc.returncode, out, err, summary)


@pytest.mark.timeout(60)
def test_ctrl_c_while_waiting_for_a_fifo_writer_ends_cleanly(tmp_path, no_children_left):
    fifo = tmp_path / "numbers.fifo"
    os.mkfifo(fifo)
    proc, summary = smsbatch(tmp_path, str(fifo))
    try:
        assert "reading numbers from" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait()
    finally:
        kill_if_running(proc)
    assert proc.returncode == 130
    assert out == ""
    assert err == "smsbatch: interrupted before the run started; nothing was sent\n"
    s = json.loads(summary.read_text())  # the list was never read: no message to account for
    assert (s["messages"], s["sent"], s["failed"], s["unsent"], s["exit_status"]) == (0, 0, 0, 0, 130)


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for <(...)")
def test_recipients_from_a_process_substitution(tmp_path, no_children_left):
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(LIST)
    summary = tmp_path / "summary.json"
    command = 'exec "$0" -m smsbatch --recipients <(cat "$1") --sender 0:0 --no-progress --seed 1 --summary-json "$2"'
    proc = start(
        ["bash", "-c", command, sys.executable, str(numbers), str(summary)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = communicate_or_kill(proc, 50)
    finally:
        kill_if_running(proc)
    check_sent_once_each(proc.returncode, out, err, summary)


def test_one_number_written_five_ways_is_sent_once(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text(LIST)
    recipients = read_recipients(str(path), "US")
    assert (recipients.valid, recipients.invalid, recipients.duplicates) == (3, 2, 4)
    assert recipients.numbers() == DISTINCT  # in the order first seen


def test_a_batch_of_a_stream_is_made_again_by_key():
    # A pipe cannot be read again: a batch a dead sender held is re-made from
    # the spool, identical to the one first handed out.
    numbers = PhonePool.build("US", random.Random(1)).numbers(8, range(50))
    reader, writer = os.pipe()
    os.write(writer, "".join(n + "\n" for n in numbers + numbers[:10]).encode())
    os.close(writer)
    try:
        recipients = read_recipients(f"/dev/fd/{reader}", "US")
    finally:
        os.close(reader)
    source = MessageSource(recipients.valid, 7, "hi", seed=1, recipients=recipients)
    batches = list(source.batches())
    assert [p for b in batches for p in b.phones()] == numbers
    assert [source.batch(k) for k in range(len(batches))] == batches
    assert recipients.duplicates == 10


def test_a_sparse_gigabyte_is_refused_after_its_first_block(tmp_path):
    # It used to be read whole: 5 s and 1.07 GB before the refusal.
    path = tmp_path / "sparse"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)
    peak = peak_memory(read_recipients, str(path), "US", raises=PhoneError)
    assert peak < 1 << 20


def test_a_list_with_a_nul_byte_after_its_first_block_is_refused(tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_bytes(b"+14155552671\n" * 10_000 + b"\0tail\n")
    with pytest.raises(PhoneError, match="is not a text file"):
        read_recipients(str(path), "US")


def test_memory_grows_with_distinct_numbers_not_with_the_list(tmp_path):
    # 2 MB of junk lines and the same five numbers: the old reader held the
    # whole file twice (bytes and text), 4 MB; now a block at a time, under 1 MB.
    path = tmp_path / "numbers.txt"
    block = "".join(f"+1 415 555 267{i}\n" + "not a number, just some words\n" * 9 for i in range(5))
    path.write_text(block * 1400)
    assert path.stat().st_size > 2_000_000
    recipients = []
    peak = peak_memory(lambda: recipients.append(read_recipients(str(path), "US")))
    assert peak < 1 << 20
    assert (recipients[0].valid, recipients[0].duplicates) == (5, 5 * 1400 - 5)


def test_an_overlong_line_is_read_by_its_start_only(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text("+14155552671," + "x" * 1_000_000 + "\n" + "y" * 1_000_000 + "\n+447400123456\n")
    recipients = []
    peak = peak_memory(lambda: recipients.append(read_recipients(str(path), "US")))
    assert (recipients[0].valid, recipients[0].invalid) == (2, 1)
    assert peak < 1 << 20


def test_the_duplicate_check_costs_at_most_16_bytes_a_number():
    # Measured with tracemalloc; a Python set of ints costs 60 or more. The
    # peak includes the moment the table grows (old and new held at once).
    # 20,000 numbers, like 100,000, come just after the table has grown: near
    # the most it holds a number (15.8 bytes held, 26.3 at the peak).
    count = 20_000
    tracemalloc.start()
    try:
        numbers = NumberSet()
        for i in range(count):
            numbers.add(12_025_550_000 + 7 * i)  # a dense range, the hard case for a hash
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(numbers) == count
    assert 12_025_550_007 in numbers
    assert 12_025_550_001 not in numbers
    assert not numbers.add(12_025_550_000)
    assert held / count <= 16
    assert peak / count <= 28


def test_a_capped_run_reads_no_more_of_the_list_than_it_needs(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text(LIST)
    recipients = read_recipients(str(path), "US", limit=2)
    assert recipients.numbers() == DISTINCT[:2]
    assert recipients.duplicates == 4


def test_which_lists_are_streams(tmp_path):
    regular = tmp_path / "numbers.txt"
    regular.write_text("+14155552671\n")
    fifo = tmp_path / "numbers.fifo"
    os.mkfifo(fifo)
    reader, writer = os.pipe()
    try:
        assert recipients_is_stream("-")
        assert recipients_is_stream(str(fifo))
        assert recipients_is_stream(f"/dev/fd/{reader}")  # a pipe, as <(...) gives
        assert not recipients_is_stream(str(regular))
        assert not recipients_is_stream(str(tmp_path / "missing"))  # reading it says why
    finally:
        os.close(reader)
        os.close(writer)


def peak_memory(function, *args, raises=None):
    """Peak bytes allocated (tracemalloc) while `function(*args)` runs."""
    tracemalloc.start()
    try:
        if raises is None:
            function(*args)
        else:
            with pytest.raises(raises):
                function(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_no_room_for_the_spool_is_bad_input_naming_tmpdir(tmp_path, monkeypatch):
    path = tmp_path / "numbers.csv"
    path.write_text(LIST)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(PhoneError, match="set TMPDIR to a writable directory"):
        read_recipients(str(path), "US")
