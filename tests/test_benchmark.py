"""The benchmark still runs (quick mode: tiny sizes, one run each; no figure is judged)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(180)
def test_benchmark_quick_mode_runs_and_prints_every_figure():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for figure in (
        "zero-wait throughput",
        "ratio to bare pipeline",
        "scheduling efficiency",
        "peak RSS",
        "start-up",
        "window",
        "rate=5000",
        "Redis backend",
        "virtual time",
        "ratio to the bare loop",
        "sim_elapsed_s, emergency",
        "--speed 1000",
        "replications",
    ):
        assert figure in out
    # The model's own figure is a real number of simulated seconds, not a placeholder.
    model_row = next(line for line in out.splitlines() if "--speed max" in line)
    assert float(re.search(r"([\d,.]+) s ", model_row).group(1).replace(",", "")) > 0
    assert " hold" in out.splitlines()[-1]
