#!/usr/bin/env bash
# docs/report.png: a screenshot of the report of one run, as the README shows it.
#   bash docs/report_screenshot.sh             # runs the emergency config (20,000 messages, virtual time)
#   bash docs/report_screenshot.sh SUMMARY.json   # or the report of a summary you have
# Needs smsbatch installed (pip install -e .) and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=${1:-}
if [ -z "$summary" ]; then
    summary="$work/summary.json"
    smsbatch -n 20000 -c configs/emergency.ini --speed max --seed 1 --no-progress --summary-json "$summary" >/dev/null
fi
smsbatch report "$summary" -o "$work/report.html"
# The network is cut (a proxy on a closed port): the page must need none.
chromium --headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/profile" --proxy-server=127.0.0.1:9 \
    --hide-scrollbars --virtual-time-budget=5000 --window-size=1280,2400 \
    --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
ls -l docs/report.png
