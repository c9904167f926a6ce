"""Output cut short or refused: `| head -1`, a closed stdout or stderr,
/dev/full, and summary paths that cannot be written. The run never loses its
summary file, never prints a traceback, and exits with its usual status."""

import io
import json
import os
import subprocess
import sys
import threading

import pytest

from smsbatch.config import UsageError
from smsbatch.present.output import QuietStream, check_output_path, write_text_file

pytestmark = pytest.mark.timeout(60)

# Tiny runs; 50 sends of 10 ms keep the run going for half a second after its
# start lines, so a reader that quits after one line has quit before the summary.
RUN = [sys.executable, "-m", "smsbatch", "-n", "50", "--sender", "0.01:0", "--seed", "1"]
BRIEF = [*RUN, "--speed", "10"]  # the same run in 50 ms, where only where the summary goes matters


def _shell(script: str, *argv, timeout=30):
    """Run `script` in bash with "$@" = argv; returns (status, stdout, stderr).
    stdout is block-buffered, as it is for most users: with PYTHONUNBUFFERED
    nothing is left in the buffer for the exit-time flush to fail on."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    proc = subprocess.run(
        ["bash", "-c", script, "bash", *argv], capture_output=True, text=True, timeout=timeout, env=env
    )
    return proc.returncode, proc.stdout, proc.stderr


def _clean(err: str) -> None:
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err


def test_head_1_still_gets_the_summary_file_and_exit_0(tmp_path, no_children_left):
    summary = tmp_path / "s.json"
    status, out, err = _shell(
        '"$@" | head -1; exit "${PIPESTATUS[0]}"', *RUN, "--no-progress", "--summary-json", str(summary)
    )
    assert out.startswith("smsbatch: 50 messages to ")
    assert out.count("\n") == 1
    _clean(err)
    assert status == 0
    assert json.loads(summary.read_text())["sent"] == 50


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full", "2>&- >&-", "2>/dev/full"])
def test_closed_or_full_stdout_and_stderr_run_to_the_end(tmp_path, redirect, no_children_left):
    summary = tmp_path / "s.json"
    # --interval 0.05: progress lines on stderr while it is dead
    status, _out, err = _shell(f'"$@" {redirect}', *RUN, "--interval", "0.05", "--summary-json", str(summary))
    _clean(err)
    assert status == 0
    data = json.loads(summary.read_text())
    assert data["sent"] == 50
    assert data["exit_status"] == 0


def test_stderr_reader_gone_mid_run(tmp_path, no_children_left):
    summary = tmp_path / "s.json"
    status, _out, _err = _shell(
        '"$@" 2>&1 >/dev/null | head -1 >/dev/null; exit "${PIPESTATUS[0]}"',
        *RUN,
        "--interval",
        "0.05",
        "--summary-json",
        str(summary),
    )
    assert status == 0
    assert json.loads(summary.read_text())["sent"] == 50


def test_summary_to_dev_stdout_is_written_in_place(tmp_path, no_children_left):
    status, out, err = _shell('"$@"', *BRIEF, "--no-progress", "--summary-json", "/dev/stdout")
    _clean(err)
    assert status == 0
    assert json.loads(out[out.index("{") :])["sent"] == 50


def test_summary_to_a_fifo_is_written_in_place(tmp_path, no_children_left):
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    status, _, err = _shell('"$@"', *BRIEF, "--no-progress", "--summary-json", str(fifo))
    reader.join(10)
    _clean(err)
    assert status == 0
    assert json.loads(received[0])["sent"] == 50
    assert sorted(os.listdir(tmp_path)) == ["summary.fifo"]


# ---- every output path is checked before the run ----


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/proc/x.json", "/proc refuses"),
        ("new.json/", "not a folder"),
        ("{tmp}", "not a folder"),
        ("{tmp}/missing/s.json", "that exists"),
        ("{tmp}/file.txt/s.json", "that exists"),  # a file where a folder should be
        ("", "must be a file path"),
    ],
)
def test_unwritable_summary_paths_are_bad_input(tmp_path, path, words):
    (tmp_path / "file.txt").write_text("")
    path = path.format(tmp=tmp_path)
    with pytest.raises(UsageError) as caught:
        check_output_path("--summary-json", path)
    message = str(caught.value)
    assert message.startswith("argument --summary-json: ")
    assert words in message
    assert message.endswith(f"(got {path!r})")


def test_the_write_probe_leaves_nothing_behind(tmp_path):
    check_output_path("--summary-json", str(tmp_path / "s.json"))
    check_output_path("--summary-json", "/dev/stdout")  # non-regular: no probe needed
    assert os.listdir(tmp_path) == []


def test_bad_summary_path_starts_nothing(tmp_path, no_children_left):
    status, out, err = _shell('"$@"', *RUN, "--summary-json", "/proc/x.json")
    assert status == 2
    assert out == ""
    assert err.startswith("smsbatch: error: argument --summary-json: ")
    assert err.count("\n") == 1


# ---- the summary file is written whole ----


def test_summary_replaces_the_old_file_whole(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("old")
    path.chmod(0o640)
    write_text_file(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert (path.stat().st_mode & 0o777) == 0o640  # the old file's mode
    assert os.listdir(tmp_path) == ["s.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text("old")

    def refuse(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        write_text_file(str(path), "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["s.json"]


def test_a_symlinked_summary_keeps_its_link(tmp_path):
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    write_text_file(str(tmp_path / "link.json"), "new")
    assert (tmp_path / "link.json").is_symlink()
    assert (tmp_path / "real.json").read_text() == "new"


# ---- the quiet stream ----


class _Broken(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_stream_that_fails_once_goes_quiet():
    stream = QuietStream(_Broken())
    assert stream.write("a\n") == 2
    assert stream.dead
    stream.write("b\n")
    stream.flush()
    assert not stream.isatty()


def test_none_stream_is_dead_from_the_start():
    stream = QuietStream(None)
    assert stream.dead
    assert stream.write("x") == 1
    assert not stream.isatty()
    stream.flush()


def test_a_live_stream_passes_everything_through():
    target = io.StringIO()
    stream = QuietStream(target)
    stream.write("hello\n")
    stream.flush()
    assert target.getvalue() == "hello\n"
    assert not stream.dead
