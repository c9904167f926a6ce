#!/usr/bin/env bash
# Measure smsbatch against its targets on this machine; prints a table.
#   scripts/benchmark.sh            the full run (a few minutes)
#   scripts/benchmark.sh --quick    tiny sizes, one run each: checks it still works
#   scripts/benchmark.sh --only run-ends,worker-leaves   some sections (--help names them)
#   scripts/benchmark.sh --chaos [--trials N --seed S]    the chaos harness instead (scripts/chaos.py, 300 trials)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--chaos" ]; then
    shift
    exec python3 scripts/chaos.py "$@"
fi
exec python3 scripts/benchmark.py "$@"
