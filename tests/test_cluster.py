"""--cluster: replications on a Dask cluster give the figures of the pool here,
to the bit; no scheduler is bad input within --broker-timeout; without
--cluster nothing imports Dask. The cluster test starts Dask's own scheduler
and two workers on this machine (it needs pip install '.[dask]')."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import free_port

from smsbatch.cli import main

PLAN = ["plan", "-n", "300", "--sender", "0.5:0.05:name=A:window=4", "--sender", "1:0.1:name=B:window=3"]
PLAN += ["--deadline", "28", "--vary", "B.copies=1..10", "--seed", "1", "--no-progress"]  # answer: B.copies = 2


def bad(argv, says):
    err = io.StringIO()
    started = time.monotonic()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert says in err.getvalue(), err.getvalue()
    assert len(err.getvalue().splitlines()) == 1
    return time.monotonic() - started


@pytest.mark.timeout(30)
def test_no_scheduler_answering_is_bad_input_within_the_timeout():
    address = f"tcp://127.0.0.1:{free_port()}"
    try:
        import distributed  # noqa: F401
    except ImportError:
        bad([*PLAN, "--cluster", address], "argument --cluster: needs Dask: pip install 'smsbatch[dask]'")
        return
    took = bad([*PLAN, "--cluster", address, "--broker-timeout", "1"], "argument --cluster: no Dask scheduler answers")
    assert took < 10


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--cluster", "redis://x:1", "--replications", "2"], "must be a Dask scheduler address such as tcp://"),
        (["--cluster", "tcp://x:1", "--replications", "2", "--speed", "10"], "--cluster: in virtual time only"),
        (["--cluster", "tcp://x:1", "--speed", "max"], "argument --cluster: for --replications (or plan, compare)"),
    ],
)
def test_cluster_rules(argv, says):
    bad(["-n", "5", *argv], says)


@pytest.mark.timeout(60)
def test_without_cluster_nothing_imports_dask(tmp_path):
    argv = ["-n", "50", "--sender", "0.1:0", "--speed", "max", "--replications", "3", "--jobs", "1", "--no-progress"]
    code = (
        "import sys; from smsbatch.cli import main; import smsbatch.planning; "
        f"assert main({argv!r}) == 0; "
        "assert not any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules), 'dask imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def cluster(tmp_path):
    """Dask's own scheduler and two workers on this machine: (address, the workers' processes)."""
    pytest.importorskip("distributed", reason="the Dask extra: pip install '.[dask]'")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path, "start_new_session": True}
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **common)]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"]
    procs += [subprocess.Popen([*worker, "--host", "127.0.0.1", "--no-nanny"], **common) for _ in range(2)]
    try:
        from distributed import Client

        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, procs[1:]
    finally:  # a Dask worker's own shutdown takes seconds; these hold nothing worth a warm stop
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait()


def figures(summary):
    """Every replication's figures, but the real seconds each took."""
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "startup_s")} for r in summary["replications"]]


@pytest.mark.timeout(180)
def test_dask_workers_give_the_local_figures_even_when_one_dies(cluster, tmp_path, processes):
    address, workers = cluster
    argv = ["-n", "300", "--sender", "0.5:0.05:window=4", "--sender", "1:0.1:window=3", "--max-retries", "1"]
    argv += ["--speed", "max", "--seed", "7", "--replications", "12", "--no-progress"]
    here, there = tmp_path / "here.json", tmp_path / "there.json"
    assert main([*argv, "--jobs", "2", "--summary-json", str(here)], stdout=io.StringIO()) == 0
    assert main([*argv, "--cluster", address, "--summary-json", str(there)], stdout=io.StringIO()) == 0
    a, b = json.loads(here.read_text()), json.loads(there.read_text())
    assert figures(b) == figures(a)
    assert len({r["seed"] for r in b["replications"]}) == 12
    assert b["aggregate"]["reach_s.90"] == a["aggregate"]["reach_s.90"]
    # Now one of the two workers is killed while a longer set runs: the scheduler runs its share again.
    longer = [*argv[:-3], "--replications", "40", "--interval", "0.1"]
    run = processes.run(*longer, "--cluster", address, summary="dying.json")
    run.wait_for_line(r"^replication \d+ done \(4/40\)")
    os.killpg(workers[0].pid, signal.SIGKILL)
    run.finish(timeout=120)
    assert run.status == 0, run.err
    assert [r["replication"] for r in run.summary["replications"]] == list(range(1, 41))
    alone = tmp_path / "alone.json"
    assert main([*longer, "--no-progress", "--jobs", "2", "--summary-json", str(alone)], stdout=io.StringIO()) == 0
    assert figures(run.summary) == figures(json.loads(alone.read_text()))
