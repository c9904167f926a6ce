import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest


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


def wait_until(condition, seconds: float = 10.0, poll: float = 0.01):
    """Wait for `condition()` to be true (its value is returned); fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds}s: {getattr(condition, '__name__', condition)}")
        time.sleep(poll)


def wait_until_gone(pids, seconds: float = 5.0) -> set[int]:
    deadline = time.monotonic() + seconds
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if os.path.exists(f"/proc/{pid}") and not _zombie(pid)}
        time.sleep(0.02)
    return alive


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def communicate_or_kill(proc, timeout):
    """proc.communicate(); if it runs too long, kill its whole process group
    first (a failing test must not leave a run going under the next ones)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


@pytest.fixture
def no_children_left():
    """Fails the test if it leaves any process of ours behind."""
    before = child_pids()
    yield
    left = wait_until_gone(child_pids() - before, seconds=3.0)
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SMSBATCH_"):
            monkeypatch.delenv(name)


class Run:
    """smsbatch in its own process group, as a user would start it."""

    def __init__(self, tmp_path, *argv, summary="summary.json"):
        self.summary_path = tmp_path / summary
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsbatch", *argv, "--summary-json", str(self.summary_path), "--interval", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.children = {}

    def wait_for_children(self, count, seconds=10.0, prefix="smsbatch: "):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = {}
            for pid in child_pids(self.proc.pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        title = handle.read().replace(b"\0", b" ").decode().strip()
                except OSError:
                    continue
                if title.startswith(prefix):
                    found[title] = pid
            if len(found) >= count:
                self.children = found
                return found
            time.sleep(0.02)
        raise AssertionError(f"children did not start: {self.children}")

    def pid_of(self, prefix):
        return next(pid for title, pid in self.children.items() if title.startswith(prefix))

    def wait_for_progress(self, minimum_seconds=0.3):
        """Let the run get going: the first progress lines go to stderr."""
        time.sleep(minimum_seconds)

    def finish(self, timeout=30):
        out, err = communicate_or_kill(self.proc, timeout)
        self.out, self.err = out, err
        self.status = self.proc.returncode
        self.summary = json.loads(self.summary_path.read_text())
        left = wait_until_gone(self.children.values(), seconds=3)
        assert not left, f"children left behind: {left}"
        return self

    def accounted(self):
        s = self.summary
        assert s["sent"] + s["failed"] + s["unsent"] == s["messages"]
        assert "every message accounted for: yes" in self.out
        assert "Traceback" not in self.err


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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

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
        _no_redis("the Redis client is not installed (pip install -e '.[test,redis]')")
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


class WorkerProc:
    """`smsbatch worker` in its own process group, as a user on another machine would start it."""

    def __init__(self, url, *argv):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsbatch", "worker", "--broker", url, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self, timeout=30):
        self.out, self.err = communicate_or_kill(self.proc, timeout)
        self.status = self.proc.returncode
        return self

    def kill_group(self, sig):
        os.killpg(self.proc.pid, sig)
