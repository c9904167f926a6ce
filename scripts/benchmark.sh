#!/usr/bin/env bash
# Measure smsbatch against its targets on this machine; prints a table.
#   scripts/benchmark.sh            the full run (a few minutes)
#   scripts/benchmark.sh --quick    tiny sizes, one run each: checks it still works
#   scripts/benchmark.sh --only run-ends,worker-leaves   some sections (--help names them)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/benchmark.py "$@"
