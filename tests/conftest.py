import contextlib
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str):
    """scripts/NAME.py as a module (the benchmark and the chaos harness are scripts, not package modules)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT_DIR, "scripts", f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def child_pids(pid: int | None = None) -> set[int]:
    """Every live descendant of `pid`, read from /proc (not from our own bookkeeping)."""
    pid = os.getpid() if pid is None else pid
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z":  # a zombie is dead already
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def process_state(pid: int) -> str:
    """The state letter /proc shows for `pid` (R, S, T, Z, ...); "" once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def wait_until(condition, seconds: float = 10.0, poll: float = 0.01):
    """Wait for `condition()` to be true (its value is returned); fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds}s: {getattr(condition, '__name__', condition)}")
        time.sleep(poll)  # the poll of this one helper; tests wait through it, never by sleeping


def wait_until_gone(pids, seconds: float = 5.0) -> set[int]:
    """The processes of `pids` still alive (zombies count as gone) after waiting up to `seconds` for them."""

    def alive() -> set[int]:
        return {pid for pid in pids if process_state(pid) not in ("", "Z")}

    with contextlib.suppress(AssertionError):
        wait_until(lambda: not alive(), seconds, poll=0.02)
    return alive()


def communicate_or_kill(proc, timeout):
    """proc.communicate(); if it runs too long, kill its whole process group
    first (a failing test must not leave a run going under the next ones)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        print(f"killed after {timeout}s; its stdout:\n{out}\nits stderr:\n{err}")  # shown with the failure
        raise


# ---- the processes a test starts: always ended, and none left behind ----

_STARTED: list[subprocess.Popen] = []  # what the running test started; `processes` ends them at teardown


def start(command, **popen) -> subprocess.Popen:
    """subprocess.Popen, in a process group of its own (so Ctrl-C from the
    terminal does not reach it and its whole group can be killed), recorded
    so that the test's teardown kills and reaps it, whatever the test did."""
    popen.setdefault("start_new_session", True)
    proc = subprocess.Popen(command, **popen)
    _STARTED.append(proc)
    return proc


def end_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `proc` leads (its children may outlive it), reap it, close its pipes."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is empty already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


class Processes:
    """The `processes` fixture: start smsbatch runs, workers and any other
    command through it; teardown kills every one with its group."""

    def __init__(self, request) -> None:
        self.request = request

    def run(self, *argv, summary: str = "summary.json") -> "Run":
        return Run(self.request.getfixturevalue("tmp_path"), *argv, summary=summary)

    def worker(self, url: str, *argv) -> "WorkerProc":
        return WorkerProc(url, *argv)

    def start(self, command, **popen) -> subprocess.Popen:
        return start(command, **popen)


@pytest.fixture(autouse=True)
def processes(request):
    """Every test gets it: what the test started is killed and reaped with its
    process group at teardown, pass or fail; then no child of pytest may be left
    (runs made in-process by main() included)."""
    before = child_pids()
    _STARTED.clear()
    yield Processes(request)
    while _STARTED:
        end_group(_STARTED.pop())
    multiprocessing.active_children()  # reaps what in-process runs left as zombies
    left = wait_until_gone(child_pids() - before, seconds=3.0)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.fixture
def no_children_left():
    """The tests that ask for it by name: the check itself is `processes`, for every test."""
    return


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SMSBATCH_"):
            monkeypatch.delenv(name)


# ---- smsbatch in a process of its own ----

PROGRESS = re.compile(r"^\[[\d.]+s\] \d+/\d+ \([\d.]+%\) sent (\d+) failed (\d+)")


class Started:
    """A command started through `start`, whose output a test may watch as it comes."""

    def __init__(self, command, url: str | None = None) -> None:
        self.url = url  # the Redis it works through (--broker), if any
        self.proc = start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: dict[str, list[str]] = {"out": [], "err": []}
        self.readers: list[threading.Thread] = []
        self.seen_held: dict[str, set] = {}  # consumer -> entries seen held (senders_holding)

    def listen(self) -> None:
        """Read stdout and stderr as they come (once a test watches them; a test
        that reads proc.stdout itself does not call this)."""
        if self.readers:
            return
        for name, pipe in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            reader = threading.Thread(target=self._read, args=(pipe, self.lines[name]), daemon=True)
            reader.start()
            self.readers.append(reader)

    @staticmethod
    def _read(pipe, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line)

    def wait_for_line(self, pattern: str, stream: str = "err", seconds: float = 20.0) -> re.Match:
        """The first line of `stream` ("out" or "err") that matches `pattern`, once it is written."""
        self.listen()
        lines, regex = self.lines[stream], re.compile(pattern)

        def matched():
            return next(filter(None, map(regex.search, list(lines))), None)

        matched.__name__ = f"a line matching {pattern!r} on std{stream}"
        return wait_until(matched, seconds)

    def collect(self, timeout: float) -> tuple[str, str]:
        """Wait for the process to end (killing its group if it takes longer
        than `timeout`), and return all it wrote."""
        if not self.readers:
            return communicate_or_kill(self.proc, timeout)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            end_group(self.proc)
            print(f"killed after {timeout}s; it wrote:\n{''.join(self.lines['out'] + self.lines['err'])}")
            raise
        for reader in self.readers:
            reader.join(10)
        assert not any(reader.is_alive() for reader in self.readers), "a process outlived smsbatch, holding its output"
        return "".join(self.lines["out"]), "".join(self.lines["err"])

    def freeze_when(self, condition, seconds: float = 20.0) -> None:
        """Stop (SIGSTOP) this process group at a moment `condition()` is true:
        stop it, look, and let it go on (SIGCONT) to look again if not; so what
        the condition saw is still so when the test acts on the frozen group
        (a batch held for a few milliseconds is still held when it is killed)."""

        def frozen_and_true():
            os.killpg(self.proc.pid, signal.SIGSTOP)
            if condition():
                return True
            os.killpg(self.proc.pid, signal.SIGCONT)
            return False

        frozen_and_true.__name__ = f"frozen while {getattr(condition, '__name__', condition)}"
        wait_until(frozen_and_true, seconds)

    def senders_holding(self, finished_one: bool = False) -> int:
        """How many of this process's senders hold a batch on a run's work stream
        now (XPENDING); with finished_one, only those also seen to have
        acknowledged a batch they held before, having written its results."""
        held = batches_held(self.url, self.proc.pid)
        finished = {name for name, seen in self.seen_held.items() if seen - held.get(name, set())}
        for name, entries in held.items():
            self.seen_held.setdefault(name, set()).update(entries)
        return sum(1 for name in held if not finished_one or name in finished)


def batches_held(url: str, pid: int) -> dict[str, set]:
    """The work-stream entries each sender of process `pid` holds, not yet
    acknowledged, over every run in progress on that Redis (consumer names are
    host/pid/n; an ended run's may be a gone process's whose pid came round again)."""
    import redis

    prefix = f"{socket.gethostname()}/{pid}/"
    held: dict[str, set] = {}
    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(match="smsbatch:*:work"):
            if client.get(key.decode().rsplit(":", 1)[0] + ":state") != b"running":
                continue
            try:
                entries = client.xpending_range(key, "senders", min="-", max="+", count=100_000)
            except redis.ResponseError:  # the stream has no consumer group yet, or is gone
                continue
            for entry in entries:
                name = entry["consumer"].decode()
                if name.startswith(prefix):
                    held.setdefault(name, set()).add(entry["message_id"])
    return held


class Run(Started):
    """smsbatch in its own process group, as a user would start it."""

    def __init__(self, tmp_path, *argv, summary="summary.json"):
        self.argv = argv
        self.summary_path = tmp_path / summary
        super().__init__(
            [sys.executable, "-m", "smsbatch", *argv, "--summary-json", str(self.summary_path), "--interval", "0.1"],
            url=argv[argv.index("--broker") + 1] if "--broker" in argv else None,
        )
        self.children = {}

    def wait_for_children(self, count, seconds=10.0, prefix="smsbatch: "):
        def started():
            found = {}
            for pid in child_pids(self.proc.pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        title = handle.read().replace(b"\0", b" ").decode().strip()
                except OSError:
                    continue
                if title.startswith(prefix):
                    found[title] = pid
            return found if len(found) >= count else None

        started.__name__ = f"{count} children titled {prefix!r}"
        self.children = wait_until(started, seconds, poll=0.02)
        return self.children

    def pid_of(self, prefix):
        return next(pid for title, pid in self.children.items() if title.startswith(prefix))

    def wait_for_progress(self, done: int = 1, seconds: float = 20.0) -> int:
        """Wait for a progress line (stderr, every --interval) counting at least
        `done` messages sent or failed; returns that count."""
        assert "--no-progress" not in self.argv, "a run with --no-progress prints no progress to wait for"
        self.listen()

        def counted():
            for line in reversed(list(self.lines["err"])):
                match = PROGRESS.match(line)
                if match:
                    count = int(match[1]) + int(match[2])
                    return count if count >= done else None
            return None

        counted.__name__ = f"progress: {done} messages sent or failed"
        return wait_until(counted, seconds)

    def results_caught_up(self) -> bool:
        """With --broker: the coordinator has read every report on its run's results
        stream (it trims what it has read, keeping the last), so all the senders
        wrote before now is counted. The run id is on the start line (stdout)."""
        import redis

        run_id = self.wait_for_line(r"^smsbatch: run (\S+) on ", stream="out")[1]
        with redis.Redis.from_url(self.url) as client:
            return client.xlen(f"smsbatch:{run_id}:results") <= 1

    def finish(self, timeout=30):
        self.out, self.err = self.collect(timeout)
        self.status = self.proc.returncode
        self.summary = json.loads(self.summary_path.read_text())
        left = wait_until_gone(self.children.values(), seconds=3)
        assert not left, f"children left behind: {left}"
        return self

    def accounted(self):
        check_accounts(self.summary)
        assert "every message accounted for: yes" in self.out
        assert "Traceback" not in self.err


def refused(argv, says: str, tmp_path) -> None:
    """Bad input: exit 2, one line on stderr that says `says`, no summary file written."""
    import io

    from smsbatch.cli import main

    err = io.StringIO()
    summary = tmp_path / "refused.json"
    assert main(["-n", "5", *argv, "--summary-json", str(summary)], stdout=io.StringIO(), stderr=err) == 2
    assert says in err.getvalue()
    assert len(err.getvalue().splitlines()) == 1
    assert not summary.exists()


def check_accounts(s: dict) -> None:
    """The totals of a summary add up, however the run ended."""
    assert s["sent"] + s["failed"] + s["unsent"] == s["messages"]
    if s["produced"] is not None:  # None: production was cut short and not counted
        assert s["sent"] + s["failed"] <= s["produced"] <= s["messages"]
    # Every attempt reported is some sender's, and ended sent or failed for it...
    assert sum(x["attempts"] for x in s["senders"]) == s["attempts"]
    assert sum(x["sent"] + x["failed"] for x in s["senders"]) == s["attempts"]
    # ...and counted once: a final outcome, a retry, or a duplicate report ignored.
    assert s["attempts"] == s["sent"] + s["failed"] + s["retried"] + s["duplicates"]


# ---- Redis, for the broker tests ----

# Read at import: the autouse fixture below clears SMSBATCH_* variables for each test.
CI_REDIS_URL = os.environ.get("SMSBATCH_TEST_REDIS_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of our own on a free loopback port. It saves nothing
    unless asked to (stop(save=True)), and start() brings it back on the same
    port, with what it saved."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="smsbatch-redis-")
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(self.answers, seconds=10, poll=0.05)
        except AssertionError:
            self.stop()
            raise RuntimeError("redis-server did not start") from None

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self, save: bool = False) -> None:
        if save:
            subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "save"], timeout=10, capture_output=True)
        else:
            self.proc.terminate()
        self.proc.wait(10)

    def remove(self) -> None:
        if self.proc.poll() is None:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _no_redis(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: in CI, .ci/run must provide one")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url():
    """The Redis .ci/run started (SMSBATCH_TEST_REDIS_URL), else one of our own."""
    try:
        import redis  # noqa: F401
    except ImportError:
        _no_redis("the Redis client is not installed (pip install -e '.[test,redis,dask]')")
    if CI_REDIS_URL:
        yield CI_REDIS_URL
        return
    if not shutil.which("redis-server"):
        _no_redis("no redis-server here (apt-get install -y redis-server)")
    server = RedisServer()
    yield server.url
    server.remove()


@pytest.fixture
def private_redis(redis_url):
    """A server of this test's own, which it may stop."""
    if not shutil.which("redis-server"):
        _no_redis("no redis-server binary to start a private server")
    server = RedisServer()
    yield server
    server.remove()


class WorkerProc(Started):
    """`smsbatch worker` in its own process group, as a user on another machine would start it."""

    def __init__(self, url, *argv):
        super().__init__([sys.executable, "-m", "smsbatch", "worker", "--broker", url, *argv], url=url)

    def finish(self, timeout=30):
        self.out, self.err = self.collect(timeout)
        self.status = self.proc.returncode
        return self

    def kill_group(self, sig):
        os.killpg(self.proc.pid, sig)
