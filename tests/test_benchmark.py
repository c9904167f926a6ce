"""The benchmark still runs (quick mode: tiny sizes, one run each; no figure is judged)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(180)
def test_benchmark_quick_mode_runs_and_prints_every_figure():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--quick"],
                            capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for figure in ("zero-wait throughput", "ratio to bare pipeline", "scheduling efficiency",
                   "peak RSS", "start-up", "window", "rate=5000", "Redis backend"):
        assert figure in out
    assert " hold" in out.splitlines()[-1]
