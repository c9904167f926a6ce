"""The HTML report, checked in a real browser.

Chromium's own command line loads each page headless, with the network cut
(a proxy on a closed port), and dumps the DOM after the page's scripts ran.
The page writes what it drew into that DOM (see report_assets/report.js):
every chart marked drawn only when its canvas has ink inside the plot area,
any error (a script error, a console.error, a resource that failed to load)
on <html data-errors>. Chromium's stderr is read too: it logs every console
message there, and this page should log none.

The summaries are synthetic, built to the smsbatch-summary/1 schema by
make_summary() below; shaped like real runs, not drawn from the model.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import start, wait_until

from smsbatch.cli import main
from smsbatch.core.stats import bucket_of, bucket_value
from smsbatch.present.report import (
    CHARTED_SENDERS,
    HEADLINE,
    RATE_POINTS,
    RUN_FIGURES,
    bucket_edges,
    chart_data,
    figure_value,
    histogram_bars,
    rate_bins,
    render_report,
    sender_groups,
    summary_problem,
    write_report,
)

pytestmark = pytest.mark.timeout(60)
CHROMIUM = shutil.which("chromium")
BROWSER_SECONDS = 45  # under the tests' 60 s timeout, so a hung browser is killed by us, with its group


# ---- synthetic summaries, to the schema ----


def make_senders(count: int) -> list[dict]:
    """Sender settings like configs/emergency.ini's, repeated with variations."""
    windows, means, fail_rates = [20, 20, 40, 1], [0.2, 0.5, 1.5, 3.0], [0.02, 0.05, 0.12, 0.1]
    return [
        {
            "name": f"carrier-{i + 1}",
            "mean_s": means[i % 4] * (1 + i // 4 * 0.1),
            "fail_rate": fail_rates[i % 4],
            "window": windows[i % 4],
            "rate": 25.0 if i % 4 == 1 else None,
            "distribution": "lognormal",
            "spread": 0.5,
        }
        for i in range(count)
    ]


def lognormal_histogram(rng, mean: float, count: int) -> list[list]:
    """[[seconds, count], ...] in smsbatch.core.stats's two-significant-figure buckets."""
    sigma = math.sqrt(math.log(1 + 0.5**2))
    draws = rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, size=max(1, count))
    buckets: dict[int, int] = {}
    for seconds in draws:
        bucket = bucket_of(float(seconds))
        buckets[bucket] = buckets.get(bucket, 0) + 1
    return [[bucket_value(b), n] for b, n in sorted(buckets.items())]


def sent_share(x: float) -> float:
    """A reach curve's shape: fast at first, slower as the fast senders run dry."""
    return 1 - (1 - x) ** 1.6


def make_timeline(specs, attempts, messages, sent, failed, retried, elapsed, rows, rng) -> dict:
    columns = ["t_s", "sent", "failed", "retried", "backlog", "p50_s", "p95_s", "p99_s"]
    for spec in specs:
        columns += [f"{spec['name']}:attempts", f"{spec['name']}:failed_attempts", f"{spec['name']}:in_flight"]
    table = []
    for i in range(rows):
        x = (i + 1) / rows
        sent_now = sent if i == rows - 1 else round(sent * sent_share(x))
        failed_now = round(failed * x)
        row = [elapsed * x, sent_now, failed_now, round(retried * x), max(0, messages - sent_now - failed_now - 60)]
        wobble = 1 + 0.08 * rng.standard_normal(3)  # percentiles of a few hundred attempts
        row += [None] * 3 if i % 97 == 13 else [0.3 * wobble[0], 1.2 * wobble[1], 2.0 * wobble[2]]
        for spec, total in zip(specs, attempts, strict=False):
            in_bin = round(total * 1.6 * (1 - x) ** 0.6 / rows)
            row += [in_bin, round(in_bin * spec["fail_rate"]), round(spec["window"] * min(1, 3 * (1 - x)))]
        table.append(row)
    return {"columns": columns, "rows": table}


def reach_times(timeline: dict, messages: int) -> dict:
    rows = timeline["rows"]
    return {
        p: next((row[0] for row in rows if row[1] >= -(-messages * int(p) // 100)), None)
        for p in ("50", "90", "99", "100")
    }


def make_summary(
    messages=5000, senders=4, rows=400, mode="virtual", elapsed=60.0, deadline_s=600.0, replications=0, seed=7
) -> dict:
    """A summary in the smsbatch-summary/1 schema, every key the report reads."""
    rng = np.random.default_rng(seed)
    specs = make_senders(senders)
    weights = np.array([s["window"] / s["mean_s"] for s in specs])
    attempts = [max(1, int(w)) for w in weights / weights.sum() * messages * 1.05]
    failed = messages // 250
    sent = messages - failed
    retried = sum(attempts) - messages
    timeline = make_timeline(specs, attempts, messages, sent, failed, retried, elapsed, rows, rng)
    within = sent * sent_share(min(1.0, deadline_s / elapsed)) / messages
    speed = "max" if mode == "virtual" else 10
    summary = {
        "schema": "smsbatch-summary/1",
        "command": f"smsbatch -n {messages} -c configs/emergency.ini --speed {speed} --seed {seed} "
        "--summary-json s.json",
        "settings": {
            "messages": messages,
            "distribution": "lognormal",
            "spread": 0.5,
            "max_retries": 2,
            "retry_backoff": 2.0,
            "seed": seed,
            "speed": speed,
            "mode": mode,
            "senders": specs,
        },
        "messages": messages,
        "sent": sent,
        "failed": failed,
        "unsent": 0,
        "attempts": sum(attempts),
        "retried": retried,
        "produced": messages,
        "avg_send_time_s": 0.4890872475558561,
        "p50_s": 0.24,
        "p95_s": 1.7000000000000002,
        "p99_s": 2.9,
        "elapsed_s": 0.016285632 if mode == "virtual" else elapsed / 10,
        "sim_elapsed_s": elapsed,
        "speed": speed,
        "mode": mode,
        "seed": seed,
        "stopped_by": "completed",
        "exit_status": 0,
        "lag_s": 0.0 if mode == "virtual" else 0.12,
        "faithful": True,
        "reach_s": reach_times(timeline, messages),
        "text": "EMERGENCY ALERT: Flash flood warning. </script><!-- not markup -->",
        "segments": 1,
        "encoding": "GSM-7",
        "deadline_s": deadline_s,
        "deadline_share": 0.9,
        "within_deadline": within,
        "met_deadline": within >= 0.9,
        "senders": [sender_figures(spec, n, elapsed, rng) for spec, n in zip(specs, attempts, strict=False)],
        "timeline": timeline,
    }
    summary["failed_attempts"] = sum(s["failed"] for s in summary["senders"])
    if replications:
        add_replications(summary, replications, rng)
    return summary


def sender_figures(spec: dict, attempts: int, elapsed: float, rng) -> dict:
    failed = round(attempts * spec["fail_rate"])
    mean = spec["mean_s"]
    return {
        **{k: spec[k] for k in ("name", "mean_s", "fail_rate", "window", "rate")},
        "state": "done",
        "attempts": attempts,
        "sent": attempts - failed,
        "failed": failed,
        "avg_send_time_s": mean,
        "rate_per_s": attempts / elapsed,
        "p50_s": mean * 0.9,
        "p95_s": mean * 1.9,
        "p99_s": mean * 2.6,
        "histogram": lognormal_histogram(rng, mean, min(attempts, 20000)),
        "busy_s": 0.8 * spec["window"] * elapsed,
        "capped_s": 0.1 * spec["window"] * elapsed if spec["rate"] else 0.0,
    }


def add_replications(summary: dict, count: int, rng) -> None:
    replications = []
    for number in range(1, count + 1):
        scale = 1 + 0.05 * rng.standard_normal()
        replication = {key: value for key, value in summary.items() if key != "timeline"}
        replication.update(
            replication=number,
            seed=summary["seed"] + number,
            sim_elapsed_s=summary["sim_elapsed_s"] * scale,
            reach_s={p: v and v * scale for p, v in summary["reach_s"].items()},
            within_deadline=min(1.0, summary["within_deadline"] * scale),
        )
        replications.append(replication)
    summary["replications"] = replications
    figures = {
        "sim_elapsed_s": [r["sim_elapsed_s"] for r in replications],
        **{f"reach_s.{p}": [r["reach_s"][p] for r in replications] for p in ("50", "90", "99", "100")},
        **{key: [r[key] for r in replications] for key in ("sent", "failed", "avg_send_time_s", "within_deadline")},
    }
    summary["aggregate"] = {key: spread_of(values) for key, values in figures.items()}


def spread_of(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "stdev": None, "ci95": [None, None], "min": None, "max": None, "n": 0}
    mean = sum(values) / len(values)
    stdev = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    half = 2.09 * stdev / math.sqrt(len(values))
    return {
        "mean": mean,
        "stdev": stdev,
        "ci95": [mean - half, mean + half],
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


SUMMARIES = {
    "real-time": lambda: make_summary(mode="real-time", elapsed=75.0, deadline_s=60.0),
    "virtual": lambda: make_summary(),
    "replications": lambda: make_summary(replications=20),
}


# ---- the browser ----


def need_chromium() -> None:
    if CHROMIUM:
        return
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs these tests")


def run_chromium(tmp_path, *args: str) -> tuple[str, str]:
    """Chromium headless with the network cut, in its own process group, which
    is killed afterwards (and on a timeout) so no helper process outlives the test."""
    command = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--proxy-server=127.0.0.1:9",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *args,
    ]
    proc = start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=BROWSER_SECONDS)
    finally:
        _kill_group(proc.pid)
        proc.communicate() if proc.returncode is None else None

    def chromium_left_no_process():
        return not _group_members(proc.pid)

    wait_until(chromium_left_no_process, seconds=5, poll=0.05)
    return out, err


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # every process of the group had ended
        os.killpg(pgid, signal.SIGKILL)


def _group_members(pgid: int) -> set[int]:
    """Live processes (not zombies) in process group `pgid`."""
    members = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.add(int(entry))
    return members


class DumpedPage(HTMLParser):
    """What the page said about itself: <html> and <body> attributes, each chart
    figure's attributes, and the text of every data-figure element."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.html, self.body, self.charts, self.figures = {}, {}, {}, {}
        self.legends: dict[str, list[str]] = {}  # chart -> the values its legend shows
        self._figure_key, self._figure_text = None, []
        self._chart, self._legend_value = None, None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("html", "body"):
            setattr(self, tag, attrs)
        if tag == "figure" and "data-chart" in attrs:
            self.charts[attrs["data-chart"]] = attrs
            self._chart = attrs["data-chart"]
        if tag == "td" and "u-value" in (attrs.get("class") or "").split() and self._chart:
            self._legend_value = []
        if "data-figure" in attrs:
            self._figure_key, self._figure_text = attrs["data-figure"], []
            self.figures[attrs["data-figure"]] = {"value": json.loads(attrs["data-value"])}

    def handle_data(self, data):
        if self._figure_key:
            self._figure_text.append(data)
        if self._legend_value is not None:
            self._legend_value.append(data)

    def handle_endtag(self, tag):
        if self._figure_key and tag == "div":
            self.figures[self._figure_key]["shown"] = "".join(self._figure_text)
            self._figure_key = None
        if tag == "td" and self._legend_value is not None:
            self.legends.setdefault(self._chart, []).append("".join(self._legend_value))
            self._legend_value = None
        if tag == "figure":
            self._chart = None


def open_in_browser(tmp_path, html: str, name: str = "report.html") -> tuple[DumpedPage, list[str]]:
    """The dumped DOM of `html` loaded from file://, and the console lines Chromium logged."""
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    dom, stderr = run_chromium(tmp_path, "--dump-dom", path.as_uri())
    console = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    return DumpedPage(dom), console


def assert_page_clean(page: DumpedPage, console: list[str]) -> None:
    assert page.body.get("data-report-done") == "1", "the page's script never finished"
    assert "data-errors" not in page.html, f"errors in the page: {page.html.get('data-errors')}"
    assert console == [], "the page wrote to the console:\n" + "\n".join(console)
    assert json.loads(page.body["data-remote-requests"]) == []
    assert json.loads(page.body["data-chart-errors"]) == []


def assert_every_chart_drawn(page: DumpedPage, expected: set[str]) -> None:
    wanted = {name for name, attrs in page.charts.items() if attrs.get("data-chart-expected") == "1"}
    assert wanted == expected
    undrawn = sorted(name for name in wanted if page.charts[name].get("data-drawn") != "1")
    assert not undrawn, f"charts with nothing drawn: {undrawn}"
    assert page.body["data-charts-drawn"] == page.body["data-charts-expected"] == str(len(expected))


def shown_matches(shown: str, value, kind: str) -> bool:
    """Whether the text a figure shows stands for `value`, to the digits it shows."""
    if kind == "bool":
        return shown == {True: "yes", False: "no"}[value]
    if kind == "text":
        return shown == str(value)
    if value is None:
        return shown == "never"
    number = re.match(r"-?[\d,]*\.?\d+", shown).group(0)
    decimals = len(number.split(".")[1]) if "." in number else 0
    parsed = float(number.replace(",", ""))
    if kind == "share":
        return shown.endswith("%") and abs(parsed / 100 - value) <= 0.5 * 10 ** -(decimals + 2) + 1e-12
    return abs(parsed - value) <= 0.5 * 10**-decimals + 1e-9


def assert_figures_match(page: DumpedPage, summary: dict) -> None:
    kinds = {key: kind for key, _, kind in HEADLINE + RUN_FIGURES}
    assert set(page.figures) == set(kinds), "a headline figure is missing from the page"
    for key, figure in page.figures.items():
        assert figure["value"] == figure_value(summary, key), key
        assert shown_matches(figure["shown"], figure["value"], kinds[key]), (key, figure)


def expected_charts(summary: dict) -> set[str]:
    charts = {"reach", "attempts", "send-time", "backlog"}
    charts |= {f"histogram-{i}" for i in range(min(len(summary["senders"]), CHARTED_SENDERS))}
    return charts | ({"replications", "replications-deadline"} if summary.get("replications") else set())


# ---- in the browser ----


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(SUMMARIES))
def test_every_chart_draws_with_no_error_and_the_figures_are_the_summarys(tmp_path, kind):
    need_chromium()
    summary = SUMMARIES[kind]()
    page, console = open_in_browser(tmp_path, render_report(summary))
    assert_page_clean(page, console)
    assert_every_chart_drawn(page, expected_charts(summary))
    assert_figures_match(page, summary)


@pytest.mark.timeout(60)
def test_charts_are_drawn_for_the_eye(tmp_path):
    """Binned, unoutlined, whole ticks for counts, legends that say something before a hover."""
    need_chromium()
    summary = make_summary(messages=100_000, senders=4, rows=2000, elapsed=100.0)
    summary["senders"][3]["histogram"] = [[0.5 + 0.1 * i, 1] for i in range(11)]  # 11 attempts: ticks at 0.2 once
    page, console = open_in_browser(tmp_path, render_report(summary))
    assert_page_clean(page, console)
    charts = page.charts
    assert int(charts["attempts"]["data-points"]) <= RATE_POINTS < 2000  # not a 50 ms bin a point
    assert json.loads(charts["attempts"]["data-outlined"]) == ["failed attempts"]  # no sender outlines the stack
    assert json.loads(charts["backlog"]["data-outlined"]) == ["backlog"]
    for name in ("backlog", "histogram-3"):
        ticks = json.loads(charts[name]["data-y-ticks"])
        assert len(ticks) >= 2, name
        assert all(tick == int(tick) for tick in ticks), (name, ticks)
    for name in ("reach", "attempts", "send-time", "backlog", "histogram-0"):
        shown = page.legends[name]
        assert len(shown) >= 2, name
        assert "--" not in shown, (name, shown)
    assert page.legends["reach"][1] == f"{100 * summary['sent'] / summary['messages']:.2f}%"  # the last value


def test_a_rate_chart_has_at_most_a_few_hundred_bins_and_keeps_every_attempt():
    summary = make_summary(messages=100_000, senders=4, rows=2000, elapsed=100.0)
    groups = sender_groups(summary["senders"])
    timeline = chart_data(summary, groups)["timeline"]
    rate = timeline["rate"]
    assert 100 <= len(rate["t_s"]) <= RATE_POINTS
    assert rate["t_s"][-1] == timeline["t_s"][-1]
    for merged, each in zip(rate["attempts"], timeline["attempts"], strict=True):
        assert len(merged) == len(rate["t_s"])
        assert sum(merged) == sum(each)
    assert sum(rate["failed_attempts"]) == sum(timeline["failed_attempts"])
    few = rate_bins([1, 2, 3], [[1, 2, 3]], None)
    assert few == {"t_s": [1, 2, 3], "attempts": [[1, 2, 3]], "failed_attempts": None, "throttled": None}


@pytest.mark.timeout(60)
def test_a_summary_without_the_new_keys_shows_what_it_has(tmp_path):
    need_chromium()
    summary = make_summary()
    for key in ("timeline", "command", "settings", "deadline_s", "deadline_share", "within_deadline", "met_deadline"):
        del summary[key]
    for sender in summary["senders"]:
        for key in ("histogram", "busy_s", "capped_s"):
            del sender[key]
    html = render_report(summary)
    page, console = open_in_browser(tmp_path, html)
    assert_page_clean(page, console)
    assert_every_chart_drawn(page, set())
    assert html.count("no timeline in this summary") == 4
    assert "No deadline figures in this summary" in html
    assert page.figures["sent"]["shown"] == f"{summary['sent']:,}"


@pytest.mark.timeout(60)
def test_the_largest_page_draws_too(tmp_path):
    need_chromium()
    summary = make_summary(messages=100_000, senders=16, rows=2000, elapsed=1377.1, replications=0)
    page, console = open_in_browser(tmp_path, render_report(summary))
    assert_page_clean(page, console)
    assert_every_chart_drawn(page, expected_charts(summary))


@pytest.mark.timeout(60)
def test_the_check_catches_a_page_that_loads_from_the_network_or_fails(tmp_path):
    """The checks above would pass a broken page if they could not see breakage: show they can."""
    need_chromium()
    html = render_report(make_summary()).replace(
        "<body>", '<body><img src="https://cdn.example.com/chart.png"><script>console.error("oops")</script>', 1
    )
    page, console = open_in_browser(tmp_path, html)
    errors = json.loads(page.html["data-errors"])
    assert "oops" in errors
    assert any("failed to load https://cdn.example.com/chart.png" in error for error in errors)
    assert any('"oops"' in line for line in console)


@pytest.mark.timeout(60)
def test_the_check_catches_a_chart_with_nothing_in_it(tmp_path):
    need_chromium()
    summary = make_summary()
    columns = summary["timeline"]["columns"]
    for row in summary["timeline"]["rows"]:
        row[columns.index("sent")] = row[columns.index("failed")] = None
    page, _ = open_in_browser(tmp_path, render_report(summary))
    assert page.charts["reach"]["data-drawn"] == "0"  # its deadline lines and labels do not count
    assert page.charts["attempts"]["data-drawn"] == "1"
    assert json.loads(page.body["data-chart-errors"]) == ["reach: nothing drawn"]


@pytest.mark.timeout(60)
def test_screenshot_shows_the_page(tmp_path):
    need_chromium()
    path = tmp_path / "report.html"
    write_report(make_summary(), str(path))
    run_chromium(
        tmp_path, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={tmp_path / 'shot.png'}", path.as_uri()
    )
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the page, without a browser ----


def test_a_100000_message_run_with_16_senders_makes_a_page_under_1_mb():
    summary = make_summary(messages=100_000, senders=16, rows=2000, elapsed=1377.1)
    size = len(render_report(summary).encode("utf-8"))
    assert size < 1_000_000, f"{size:,} bytes"


def test_twenty_senders_chart_the_fifteen_busiest_and_others():
    summary = make_summary(senders=20)
    senders = summary["senders"]
    groups = sender_groups(senders)
    busiest = sorted(range(20), key=lambda i: -senders[i]["attempts"])[:15]
    assert [members for _, members in groups[:15]] == [[i] for i in sorted(busiest)]
    assert groups[15] == ("others (5 senders)", sorted(set(range(20)) - set(busiest)))
    data = chart_data(summary, groups)
    assert len(data["timeline"]["attempts"]) == len(data["histograms"]) == 16
    every_bin = [sum(bins) for bins in zip(*data["timeline"]["attempts"], strict=False)]
    columns = summary["timeline"]["columns"]
    wanted = [
        sum(row[i] for i, c in enumerate(columns) if c.endswith(":attempts")) for row in summary["timeline"]["rows"]
    ]
    assert every_bin == wanted
    html = render_report(summary)
    assert html.count('data-chart="histogram-') == 16
    assert all(f"<td>{s['name']}</td>" in html for s in senders)  # the table lists every sender


def test_a_sender_name_cannot_close_the_data_script():
    summary = make_summary(senders=2)
    evil = "</script><script>alert(1)</script><!--"
    old = summary["senders"][0]["name"]
    summary["senders"][0]["name"] = evil
    summary["timeline"]["columns"] = [c.replace(old + ":", evil + ":") for c in summary["timeline"]["columns"]]
    html = render_report(summary)
    data_text = html.split('<script type="application/json" id="report-data">')[1].split("</script>")[0]
    assert json.loads(data_text)["groups"][0] == evil
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == 4  # the error catcher, the data, uPlot, report.js


def test_a_key_of_the_wrong_type_shows_as_missing_rather_than_failing():
    """A summary that passes summary_problem() always renders, whatever type its other keys have."""
    base = make_summary(senders=2, rows=20, replications=2)  # small: it renders ~600 times
    for where in (lambda s: s, lambda s: s["senders"][0], lambda s: s["replications"][0]):
        for key in list(where(base)):
            for junk in ("x", [1], None, {"a": 1}, -1.5, True):
                summary = json.loads(json.dumps(base))
                where(summary)[key] = junk
                if summary_problem(summary) is None:
                    assert render_report(summary).startswith("<!DOCTYPE html>"), (key, junk)


def test_the_histogram_keeps_every_attempt_and_its_buckets_edges():
    assert bucket_edges(0.24) == pytest.approx((0.235, 0.245))
    assert bucket_edges(1.0) == pytest.approx((0.995, 1.05))
    assert bucket_edges(0.0) == (0.0, 0.0)
    buckets = {0.0: 3, 0.24: 10, 0.99: 5, 1.0: 7, 13.0: 2}
    bars = histogram_bars(buckets)
    assert sum(bars["y"]) == pytest.approx(27, abs=0.3)  # counts rounded to 0.1 per bar
    assert bars["x"][-1] + bars["width"] / 2 >= 13.5


# ---- the command ----


def run_report(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(["report", *argv], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_report_command_writes_the_page_and_says_where(tmp_path):
    summary_path, report_path = tmp_path / "s.json", tmp_path / "r.html"
    summary_path.write_text(json.dumps(make_summary()))
    status, out, err = run_report(str(summary_path), "-o", str(report_path))
    assert (status, err) == (0, "")
    assert out == f"smsbatch report: wrote {report_path} (open it in a browser)\n"
    assert report_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (lambda s: {k: v for k, v in s.items() if k != "schema"}, 'has no "schema" key'),
        (
            lambda s: {**s, "schema": "smsbatch-summary/2"},
            "schema 'smsbatch-summary/2' is newer than this smsbatch reads",
        ),
        (lambda s: {**s, "schema": "other/1"}, "schema 'other/1' is not one this smsbatch reads"),
        (lambda s: [s], "must be a JSON object"),
        (lambda s: {**s, "timeline": {"columns": ["t_s"], "rows": [[1, 2]]}}, '"timeline" must be'),
    ],
)
def test_a_file_that_is_not_a_readable_summary_is_one_line_and_status_2(tmp_path, content, rule):
    summary_path = tmp_path / "s.json"
    summary_path.write_text(json.dumps(content(make_summary(rows=200))))
    status, out, err = run_report(str(summary_path), "-o", str(tmp_path / "r.html"))
    assert (status, out) == (2, "")
    assert err.startswith("smsbatch report: error: argument SUMMARY: ")
    assert rule in err
    assert err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("text", "rule"), [("{not json", "must be JSON; line 1 column 2"), (None, "no such file")])
def test_not_json_or_missing_is_one_line_and_status_2(tmp_path, text, rule):
    summary_path = tmp_path / "s.json"
    if text is not None:
        summary_path.write_text(text)
    status, _out, err = run_report(str(summary_path), "-o", str(tmp_path / "r.html"))
    assert status == 2
    assert rule in err
    assert err.count("\n") == 1


def test_output_into_a_missing_folder_is_one_line_and_status_2(tmp_path):
    summary_path = tmp_path / "s.json"
    summary_path.write_text(json.dumps(make_summary(rows=200)))
    status, _out, err = run_report(str(summary_path), "-o", str(tmp_path / "nope" / "r.html"))
    assert status == 2
    assert err.startswith("smsbatch report: error: argument -o/--output: must be in a folder that exists")
    assert err.count("\n") == 1


def test_output_over_the_summary_itself_is_refused(tmp_path):
    summary_path = tmp_path / "summary"  # no suffix, which -o takes as it is (s.json is refused for its suffix)
    summary_path.write_text(json.dumps(make_summary(rows=200)))
    status, _out, err = run_report(str(summary_path), "-o", str(summary_path))
    assert status == 2
    assert "-o/--output: must not be the summary file itself" in err
    assert json.loads(summary_path.read_text())["schema"] == "smsbatch-summary/1"


def test_output_is_required(tmp_path):
    status, _out, err = run_report(str(tmp_path / "s.json"))
    assert (status, err) == (2, "smsbatch report: error: the following arguments are required: -o/--output\n")


# ---- reports of real runs, written by --report ----

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_RUNS = {
    "real-time": (
        "-n",
        "600",
        "--sender",
        "0.05:0.1:window=4",
        "--sender",
        "0.2:0.05:rate=10",
        "--max-retries",
        "1",
        "--speed",
        "50",
    ),
    "virtual": ("-c", "configs/emergency.ini", "-n", "20000", "--speed", "max"),
    "replications": (
        "-c",
        "configs/emergency.ini",
        "-n",
        "5000",
        "--speed",
        "max",
        "--replications",
        "4",
        "--jobs",
        "2",
    ),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", sorted(REAL_RUNS))
def test_the_report_of_a_real_run_draws_every_chart_and_shows_its_figures(tmp_path, kind):
    need_chromium()
    summary_path, report_path, timeline_path = (tmp_path / "s.json", tmp_path / "r.html", tmp_path / "t.csv")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smsbatch",
            *REAL_RUNS[kind],
            "--seed",
            "3",
            "--no-progress",
            "--summary-json",
            str(summary_path),
            "--report",
            str(report_path),
            "--timeline",
            str(timeline_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["schema"] == "smsbatch-summary/1"
    assert summary["mode"] == ("real-time" if kind == "real-time" else "virtual")
    rows = summary["timeline"]["rows"]
    assert 200 <= len(rows) <= 2000
    assert rows[-1][1] == summary["sent"]
    assert timeline_path.read_text().splitlines()[0].startswith("t_s,sent,failed,retried,backlog")
    page, console = open_in_browser(tmp_path, report_path.read_text())
    assert_page_clean(page, console)
    assert_every_chart_drawn(page, expected_charts(summary))
    assert_figures_match(page, summary)


def test_a_run_whose_figures_moved_says_which_in_the_verdict():
    summary = make_summary(mode="real-time")
    summary["faithful"] = False
    summary["model_check"] = {"sim_elapsed_s": 50.0, "off": ["sim_elapsed 60.0s against the model's 50.0s (+20.0%)"]}
    html = render_report(summary)
    assert "NOT faithful: sim_elapsed 60.0s against the model&#x27;s 50.0s (+20.0%), more than 3% from" in html
    summary["model_check"] = None  # a run judged by its lag (through Redis, stopped, a sender lost)
    assert "NOT faithful: the run fell behind the model by up to" in render_report(summary)


def test_a_run_with_receipts_leads_with_what_was_delivered(tmp_path):
    path = tmp_path / "s.json"
    argv = ["-n", "2000", "--sender", "0.05:0.02:window=4", "--dlr-median", "15", "--dlr-p90", "60"]
    argv += ["--undeliverable", "0.05", "--account", "a:rate=30", "--sender", "0:0:account=a"]
    assert main([*argv, "--speed", "max", "--seed", "3", "--no-progress", "--summary-json", str(path)]) == 0
    summary = json.loads(path.read_text())
    page = render_report(summary)
    assert "were delivered within" in page
    shown = dict(re.findall(r'data-figure="([^"]+)" data-kind="\w+" data-value="([^"]*)"', page))
    assert json.loads(shown["delivered"].replace("&quot;", '"')) == summary["delivered"]
    assert json.loads(shown["undeliverable"]) == summary["undeliverable"]
    assert json.loads(shown["delivered_reach_s.50"]) == summary["delivered_reach_s"]["50"]
    assert "<td>a 30/s</td>" in page  # the accounts setting, not a dict's repr
    plain = render_report({**summary, "receipts_modelled": False})
    assert "were sent within" in plain
    assert 'data-figure="delivered"' not in plain
