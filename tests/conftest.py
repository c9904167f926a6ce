import os
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
