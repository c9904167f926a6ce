"""The HTML report: one self-contained page built from a run's summary JSON.

    summary dict --> render_report() --> HTML text --> write_report(path)
                      |-- scorecard, tables: written here, as HTML (readable with no JS, printable)
                      |-- chart data: pruned and rounded, as JSON in <script type="application/json">
                      `-- uPlot + report.js + CSS: inlined from smsbatch/present/report_assets/

The page asks nothing of the network and needs no server: everything it shows
is inside it. Its size is bounded whatever the run's size: the timeline has at
most 2,000 rows, chart numbers keep 5 significant figures, and beyond 16
senders the charts show the 15 busiest and "others" together (the table still
lists every sender).

`smsbatch report SUMMARY.json -o REPORT.html` (report_main) rebuilds the page
from a saved summary.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, NoReturn, TextIO

from smsbatch import __version__
from smsbatch.core.errors import UsageError
from smsbatch.core.settings import RUN_FIELDS, SENDER_FIELDS, summary_keys
from smsbatch.core.summary import SUMMARY_SCHEMA, JsonObject, Summary
from smsbatch.present.output import REPORT_SUFFIXES, check_output_path, write_text_file

if TYPE_CHECKING:
    from typing_extensions import TypeIs  # typing.TypeIs from Python 3.13

SCHEMA_PREFIX = SUMMARY_SCHEMA.rsplit("/", 1)[0] + "/"  # "smsbatch-summary/": a version follows
UPLOT_VERSION = "1.6.32"  # smsbatch/present/report_assets/README.md says where it came from
CHARTED_SENDERS = 16  # more than this: the 15 busiest and "others"
HISTOGRAM_BINS = 40  # bars per send-time histogram
CHART_DIGITS = 5  # significant figures: 2,000 bins need 4 to stay distinct
RATE_POINTS = 200  # at most this many bins in a rate chart: 33 ms bins of a 100 s run are noise to the eye
REACH_MARKS = ("50", "90", "99")

Number = int | float  # a JSON number


# ---- the command ----


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        raise UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(prog="smsbatch report", description="Build the HTML report of a run from its --summary-json file.")
    parser.add_argument("summary", metavar="SUMMARY", help="a summary file written by smsbatch --summary-json")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="REPORT",
        help="where to write the report (one self-contained .html file)",
    )
    return parser


def report_main(argv: list[str], stdout: TextIO, stderr: TextIO) -> int:
    """`smsbatch report SUMMARY -o REPORT`: 0 when written, 2 on bad input, 1 if the write fails."""
    try:
        args = _parser().parse_args(argv)
        check_output_path("-o/--output", args.output, REPORT_SUFFIXES)  # before reading: said at once
        _check_not_the_summary(args.output, args.summary)
        summary = load_summary(args.summary)
    except UsageError as error:
        stderr.write(f"smsbatch report: error: {error}\n")
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    try:
        write_report(summary, args.output)
    except OSError as error:  # the disk filled up, the folder went away since the check
        stderr.write(f"smsbatch report: could not write the report to {args.output} ({error.strerror or error})\n")
        return 1
    stdout.write(f"smsbatch report: wrote {args.output} (open it in a browser)\n")
    return 0


def _check_not_the_summary(output: str, summary: str) -> None:
    """Writing the page over its own summary would lose the run's data."""
    try:
        same = os.path.samefile(output, summary)
    except OSError:
        return  # either does not exist yet: not the same file
    if same:
        raise UsageError(f"argument -o/--output: must not be the summary file itself (got {output!r})")


def load_summary(path: str) -> Summary:
    """The summary at `path`, checked: UsageError (naming SUMMARY and the rule) otherwise."""

    def bad(rule: str) -> UsageError:
        return UsageError(f"argument SUMMARY: {rule} (got {path!r})")

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise bad("no such file") from None
    except IsADirectoryError:
        raise bad("must be a file, not a folder") from None
    except UnicodeDecodeError:
        raise bad("must be a JSON file; this one is not UTF-8 text") from None
    except OSError as error:
        raise bad(f"cannot be read ({error.strerror})") from None
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad(f"must be JSON; line {error.lineno} column {error.colno}: {error.msg}") from None
    except (ValueError, RecursionError):  # a 5,000-digit number, nesting too deep to read
        raise bad("must be a JSON summary; this JSON is beyond what Python reads") from None
    rule = summary_problem(summary)
    if rule:
        raise bad(rule)
    checked: Summary = summary  # an object with the keys the page reads, of their types
    return checked


def summary_problem(summary: object) -> str | None:
    """What makes `summary` something this report cannot read, or None."""
    if not isinstance(summary, dict):
        return "must be a JSON object written by smsbatch --summary-json"
    schema = summary.get("schema")
    if schema is None:
        return f'has no "schema" key, so it is not a {SUMMARY_SCHEMA} file (write one with smsbatch --summary-json)'
    if schema != SUMMARY_SCHEMA:
        if _schema_version(schema) > _schema_version(SUMMARY_SCHEMA):  # a later smsbatch wrote it
            return f"schema {schema!r} is newer than this smsbatch reads ({SUMMARY_SCHEMA}); upgrade smsbatch"
        return f"schema {schema!r} is not one this smsbatch reads ({SUMMARY_SCHEMA})"
    return _shape_problem(summary)


def _schema_version(schema: object) -> int:
    """2 for "smsbatch-summary/2"; 0 for anything that is not a summary schema."""
    if isinstance(schema, str) and schema.startswith(SCHEMA_PREFIX) and schema[len(SCHEMA_PREFIX) :].isdigit():
        return int(schema[len(SCHEMA_PREFIX) :])
    return 0


def _shape_problem(summary: Summary) -> str | None:
    """The keys the page is drawn from must have the types the schema gives them."""
    if not _is_count(summary.get("messages")):
        return '"messages" must be a whole number'
    senders = summary.get("senders", [])
    if not isinstance(senders, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) for s in senders
    ):
        return '"senders" must be a list of objects with a "name"'
    timeline = summary.get("timeline")
    if timeline is not None and not _table_shaped(timeline):
        return '"timeline" must be {"columns": [names], "rows": [[values], ...]}, one value per column'
    replications = summary.get("replications")
    if replications is not None and not (
        isinstance(replications, list) and all(isinstance(r, dict) for r in replications)
    ):
        return '"replications" must be a list of summaries'
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _table_shaped(timeline: object) -> bool:
    if not isinstance(timeline, dict):
        return False
    columns, rows = timeline.get("columns"), timeline.get("rows")
    return (
        isinstance(columns, list)
        and all(isinstance(c, str) for c in columns)
        and isinstance(rows, list)
        and all(isinstance(row, list) and len(row) == len(columns) for row in rows)
    )


# ---- the page ----


def write_report(summary: Summary, path: str) -> None:
    """Write the report of `summary` at `path`, whole (a reader never sees half a page)."""
    write_text_file(path, render_report(summary))


def render_report(summary: Summary) -> str:
    """The report page of `summary` as one HTML string. Keys the summary lacks
    (an older run has no timeline, say) leave their part of the page saying so."""
    senders = summary.get("senders") or []
    groups = sender_groups(senders)
    data = chart_data(summary, groups)
    body = "\n".join(
        [
            _header(summary),
            _plan_section(summary),
            _compare_section(summary),
            _scorecard(summary),
            _repeat_section(summary),
            _timeline_section(summary),
            _histogram_section(senders, groups),
            _sender_table(summary),
            _replications_section(summary),
            _footer(),
        ]
    )
    title = f"smsbatch report: {_count(summary.get('messages'))} messages, seed {summary.get('seed', '?')}"
    return PAGE.format(
        title=_h(title),
        css=_asset("uPlot.min.css") + "\n" + _asset("report.css"),
        error_catcher=ERROR_CATCHER,
        body=body,
        data=script_json(data),
        uplot=_asset("uPlot.iife.min.js"),
        script=_asset("report.js"),
    )


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script>{error_catcher}</script>
<style>
{css}
</style>
</head>
<body>
{body}
<script type="application/json" id="report-data">{data}</script>
<script>{uplot}</script>
<script>{script}</script>
</body>
</html>
"""

# First in the page, before any other script: an error anywhere (a chart that
# throws, a console.error) is written into the DOM, where a headless browser's
# --dump-dom (and so the tests) can read it.
ERROR_CATCHER = """
window.reportErrors = [];
window.recordReportError = function (message) {
  window.reportErrors.push(String(message));
  document.documentElement.setAttribute("data-errors", JSON.stringify(window.reportErrors));
};
window.addEventListener("error", function (event) {
  var target = event.target;
  if (target && target !== window) {  // a resource that failed to load: this page should load none
    window.recordReportError("failed to load " + (target.src || target.href || target.tagName));
  } else {
    window.recordReportError(event.message + " at " + event.filename + ":" + event.lineno);
  }
}, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.recordReportError(Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
"""


def _asset(name: str) -> str:
    text = resources.files("smsbatch.present").joinpath("report_assets", name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "</style" in text.lower():  # would end its tag early
        raise ValueError(f"report asset {name} contains a closing tag and cannot be inlined")
    return text


def script_json(data: object) -> str:
    """JSON for a <script> element: every `<` escaped, so no string in it (a
    sender named `</script>`) can close the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


# ---- formatting: what the page shows for a value ----


def _count(value: object) -> str:
    return f"{value:,}" if _is_number(value) else "n/a"


def _seconds(value: object, never: str = "never", minutes: bool = True) -> str:
    """Simulated or real seconds, to about 3 figures; minutes added past two of them."""
    if value is None:
        return never
    if not _is_number(value):
        return "n/a"
    text = (f"{value:.3f} s" if value < 1 else f"{value:.2f} s") if value < 10 else f"{value:,.1f} s"
    if minutes and value >= 120:
        text += f" ({_minutes(value)})"
    return text


def _minutes(value: float) -> str:
    whole_minutes, seconds = divmod(round(value), 60)
    return f"{whole_minutes:,} min {seconds} s"


def _share(value: object) -> str:
    """A share 0..1 as a percentage; two decimals just below 100%, so 99.96% never shows as 100%."""
    if not _is_number(value):
        return "n/a"
    percent = value * 100
    return f"{percent:.2f}%" if 99 < percent < 100 else f"{percent:.1f}%"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: object) -> JsonObject:
    """`value` if it is an object, else an empty one: a key of the wrong type shows as missing."""
    return value if isinstance(value, dict) else {}


def _plain(value: object) -> str:
    """A setting as written: 0.22, not the 0.22000000000000003 arithmetic may leave."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _list(value: object) -> list[object]:
    """`value` if it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def _yes_no(value: object) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else "n/a"


def _is_number(value: object) -> TypeIs[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


FORMATS: dict[str, Callable[[object], str]] = {
    "count": _count,
    "seconds": _seconds,
    "share": _share,
    "bool": _yes_no,
    "text": str,
}


def figure_value(summary: Summary, key: str) -> object:
    """The value at a dotted key (`reach_s.90`), or KeyError."""
    value: object = summary
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def _figure(summary: Summary, key: str, label: str, kind: str) -> str:
    """A headline figure: `data-figure` names its key, `data-value` holds the
    JSON value, the text shows it formatted. A key the summary lacks shows so."""
    try:
        value = figure_value(summary, key)
    except KeyError:
        return (
            f'<div class="figure missing"><div class="label">{_h(label)}</div>'
            f'<div class="value">not in this summary</div></div>'
        )
    shown = _seconds(value, minutes=False) if kind == "seconds" else FORMATS[kind](value)
    note = ""  # minutes, for a long time: under the figure, so the figure stays on one line
    if kind == "seconds" and _is_number(value) and value >= 120:
        note = _minutes(value)
    note_html = f'<div class="note">{_h(note)}</div>' if note else ""
    return (
        f'<div class="figure"><div class="label">{_h(label)}</div>'
        f'<div class="value" data-figure="{_h(key)}" data-kind="{kind}" '
        f'data-value="{_h(json.dumps(value))}">{_h(shown)}</div>{note_html}</div>'
    )


# ---- sections ----


def _header(summary: Summary) -> str:
    senders = summary.get("senders") or []
    mode = {"real-time": "real", "virtual": "virtual"}.get(_text(summary.get("mode")) or "", "unknown")
    speed = summary.get("speed")
    speed_text = "" if speed in (None, "max") else f" at speed x{speed:g}" if _is_number(speed) else ""
    line = (
        f"{_count(summary.get('messages'))} messages through {len(senders)} "
        f"sender{'s' if len(senders) != 1 else ''}, {mode} time{speed_text}, seed {summary.get('seed', '?')}"
    )
    return (
        f'<header><h1>smsbatch report</h1><p class="subtitle">{_h(line)}</p>'
        f"{_verdict(summary)}{_warnings(summary)}</header>"
    )


def _verdict(summary: Summary) -> str:
    met, within = summary.get("met_deadline"), summary.get("within_deadline")
    if not isinstance(met, bool) or not _is_number(within):
        return '<p class="verdict unknown">No deadline figures in this summary.</p>'
    deadline, target = summary.get("deadline_s"), summary.get("deadline_share")
    said = "Deadline met" if met else "Deadline missed"
    counted = "delivered" if summary.get("receipts_modelled") is True else "sent"
    return (
        f'<p class="verdict {"met" if met else "missed"}">{said}: {_share(within)} of the messages '
        f"were {counted} within {_seconds(deadline)} (target {_share(target)}).</p>"
    )


def _warnings(summary: Summary) -> str:
    notes = []
    stopped_by = summary.get("stopped_by")
    if stopped_by not in (None, "completed"):
        notes.append(
            f"The run was stopped ({stopped_by}, exit status {summary.get('exit_status')}): "
            "the figures cover the part that ran."
        )
    check = summary.get("model_check")
    off = check.get("off") if isinstance(check, dict) else None
    if summary.get("faithful") is False and isinstance(off, list) and off:
        notes.append(
            f"NOT faithful: {_plain(off[0])}{f' (and {len(off) - 1} more figures)' if len(off) > 1 else ''}, "
            "more than 3% from the model's (the same run in virtual time), so its figures depend on the "
            "machine it ran on."
        )
    elif summary.get("faithful") is False:
        notes.append(
            f"NOT faithful: the run fell behind the model by up to {_seconds(summary.get('lag_s'))} "
            "simulated, so its figures depend on the machine it ran on."
        )
    return "".join(f'<p class="warning">{_h(note)}</p>' for note in notes)


HEADLINE = [  # (key, label, kind)
    ("messages", "messages", "count"),
    ("sent", "sent", "count"),
    ("failed", "failed messages", "count"),
    ("unsent", "unsent", "count"),
    ("reach_s.50", "50% sent at", "seconds"),
    ("reach_s.90", "90% sent at", "seconds"),
    ("reach_s.99", "99% sent at", "seconds"),
    ("reach_s.100", "100% sent at", "seconds"),
    ("within_deadline", "sent within the deadline", "share"),
    ("met_deadline", "deadline met", "bool"),
    ("deadline_s", "deadline", "seconds"),
    ("deadline_share", "deadline target", "share"),
    ("sim_elapsed_s", "elapsed, simulated", "seconds"),
    ("elapsed_s", "elapsed, real", "seconds"),
    ("attempts", "attempts", "count"),
    ("failed_attempts", "failed attempts", "count"),
    ("retried", "retries", "count"),
    ("avg_send_time_s", "mean send time", "seconds"),
    ("p50_s", "send time p50", "seconds"),
    ("p95_s", "send time p95", "seconds"),
    ("p99_s", "send time p99", "seconds"),
]


RECEIPT_FIGURES = [  # with delivery receipts modelled: what reached the handsets, first
    ("delivered", "delivered", "count"),
    ("undeliverable", "undeliverable", "count"),
    ("no_receipt", "no receipt", "count"),
    ("receipt_pending", "receipt pending", "count"),
    ("receipt_expired", "receipt after the validity", "count"),
    ("delivered_reach_s.50", "50% delivered at", "seconds"),
    ("delivered_reach_s.90", "90% delivered at", "seconds"),
    ("delivered_reach_s.99", "99% delivered at", "seconds"),
]


def _scorecard(summary: Summary) -> str:
    shown = HEADLINE
    if summary.get("receipts_modelled") is True:
        shown = RECEIPT_FIGURES + [
            (key, "delivered within the deadline" if key == "within_deadline" else label, kind)
            for key, label, kind in HEADLINE
        ]
    figures = "".join(_figure(summary, key, label, kind) for key, label, kind in shown)
    return f'<section id="scorecard"><h2>Scorecard</h2><div class="figures">{figures}</div></section>'


RUN_FIGURES = [
    ("seed", "seed", "text"),
    ("mode", "mode", "text"),
    ("speed", "speed", "text"),
    ("faithful", "faithful to the model", "bool"),
    ("lag_s", "fell behind by at most", "seconds"),
    ("stopped_by", "ended by", "text"),
    ("exit_status", "exit status", "text"),
]

SETTING_KEYS = list(summary_keys(RUN_FIELDS, report=True))
SENDER_SETTING_KEYS = list(summary_keys(SENDER_FIELDS, report=True))
SENDER_RUN_KEYS = list(summary_keys(SENDER_FIELDS, per_sender=True))  # those a sender's figures in the summary carry


def _repeat_section(summary: Summary) -> str:
    command = summary.get("command")
    command_html = (
        f"<pre><code>{_h(command)}</code></pre>"
        if isinstance(command, str)
        else '<p class="missing">The command line is not in this summary.</p>'
    )
    figures = "".join(_figure(summary, key, label, kind) for key, label, kind in RUN_FIGURES)
    return (
        f'<section id="repeat"><h2>How to repeat this run</h2>{command_html}'
        f'<div class="figures small">{figures}</div>{_settings_tables(summary)}</section>'
    )


def _setting(value: object) -> object:
    """A setting as the table shows it: the accounts as `a 30/s, b 100/s`, anything else as it is."""
    if isinstance(value, dict):
        return ", ".join(
            f"{name} {fields['rate']:g}/s" if isinstance(fields, dict) and _is_number(fields.get("rate")) else str(name)
            for name, fields in value.items()
        )
    return value


def _settings_tables(summary: Summary) -> str:
    settings = summary.get("settings")
    if not isinstance(settings, dict):
        senders = summary.get("senders") or []
        return '<p class="missing">The full settings are not in this summary; the senders as run:</p>' + _table(
            SENDER_RUN_KEYS, [[s.get(k) for k in SENDER_RUN_KEYS] for s in senders]
        )
    run = _table(["setting", "value"], [[key, _setting(settings[key])] for key in SETTING_KEYS if key in settings])
    senders = settings.get("senders")
    rows = [[s.get(k) for k in SENDER_SETTING_KEYS] for s in _list(senders) if isinstance(s, dict)]
    return f'<div class="settings">{run}{_table(SENDER_SETTING_KEYS, rows)}</div>'


def _table(headings: list[str], rows: list[list[object]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(_cell(value, i >= numeric_from) for i, value in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object, numeric: bool) -> str:
    text = "none" if value is None else _h(_plain(value))
    return f'<td class="num">{text}</td>' if numeric and not isinstance(value, str) else f"<td>{text}</td>"


TIME_CHARTS = [  # (name, title, what it shows)
    (
        "reach",
        "Share of messages sent",
        (
            "Cumulative share of all messages sent (and failed for good) over simulated time; the dashed lines "
            "are the deadline and its target share, the dots the times 50, 90 and 99% had been sent."
        ),
    ),
    (
        "attempts",
        "Attempts per second, by sender",
        (
            "Attempts that ended in each time bin (the timeline's bins merged to at most 200), per simulated "
            "second, stacked by sender; the red line is failed attempts per second (all senders)."
        ),
    ),
    (
        "send-time",
        "Send time per bin",
        "p50, p95 and p99 of the send times of the attempts that ended in each bin (gaps: no attempt ended).",
    ),
    (
        "backlog",
        "Backlog and in flight",
        (
            "Messages waiting at the end of each bin, retries pending included (left axis), and sends in "
            "flight per sender, stacked (right axis)."
        ),
    ),
]


def _timeline_section(summary: Summary) -> str:
    has_timeline = isinstance(summary.get("timeline"), dict) and bool(summary["timeline"].get("rows"))
    charts = "".join(
        _chart_box(name, title, about, has_timeline, "no timeline in this summary")
        for name, title, about in TIME_CHARTS
    )
    return (
        f'<section id="timeline"><h2>Over simulated time</h2>'
        f'<p class="hint">Hover for values; drag across a chart to zoom (all four follow), '
        f"double-click to zoom out.</p>{charts}</section>"
    )


def _chart_box(name: str, title: str, about: str, available: bool, missing: str) -> str:
    inner = '<div class="plot"></div>' if available else f'<div class="missing-chart">{_h(missing)}</div>'
    wanted = ' data-chart-expected="1"' if available else ""
    return (
        f'<figure class="chart" data-chart="{_h(name)}"{wanted}><figcaption><b>{_h(title)}</b> '
        f"{_h(about)}</figcaption>{inner}</figure>"
    )


def _histogram_section(senders: list[JsonObject], groups: list[tuple[str, list[int]]]) -> str:
    boxes = []
    for index, (label, members) in enumerate(groups):
        has_histogram = any(isinstance(senders[i].get("histogram"), list) and senders[i]["histogram"] for i in members)
        about = _histogram_caption(senders, members)
        boxes.append(
            _chart_box(f"histogram-{index}", label, about, has_histogram, "no send-time histogram in this summary")
        )
    return (
        f'<section id="histograms"><h2>Send times by sender</h2>'
        f'<p class="hint">How many attempts took how long (simulated seconds).</p>'
        f'<div class="grid">{"".join(boxes)}</div></section>'
    )


def _histogram_caption(senders: list[JsonObject], members: list[int]) -> str:
    if len(members) > 1:
        return f"{sum(_number(senders[i].get('attempts')) for i in members):,} attempts"
    sender = senders[members[0]]
    return (
        f"{_count(sender.get('attempts'))} attempts; p50 {_seconds(sender.get('p50_s'), 'n/a')}, "
        f"p95 {_seconds(sender.get('p95_s'), 'n/a')}, p99 {_seconds(sender.get('p99_s'), 'n/a')}"
    )


def _number(value: object) -> float:
    return value if _is_number(value) else 0


SENDER_COLUMNS = [
    "sender",
    "window",
    "rate cap /s",
    "attempts",
    "share of attempts",
    "sent",
    "failed attempts",
    "fail rate set",
    "fail rate seen",
    "utilisation",
    "held back by rate cap",
    "throttled",
    "interrupted",
    "down",
    "p50",
    "p95",
    "p99",
]


def _sender_table(summary: Summary) -> str:
    senders = summary.get("senders") or []
    total = sum(_number(s.get("attempts")) for s in senders)
    span = _number(summary.get("sim_elapsed_s"))
    rows = [_sender_row(sender, total, span) for sender in senders]
    return (
        f'<section id="senders"><h2>Senders</h2>{_table(SENDER_COLUMNS, rows)}'
        f'<p class="hint">Counts are attempts. Utilisation: time the slots spent sending / (window x '
        f"simulated elapsed time); held back: time a free slot with work waiting was kept idle by "
        f"the rate cap, on the same scale. Throttled: the gateway's answers (cap=), interrupted: sends its "
        f"outage cut short; neither is an attempt. Down: simulated time in outages.</p></section>"
    )


def _sender_row(sender: JsonObject, total_attempts: float, span: float) -> list[object]:
    attempts: object = sender.get("attempts")
    failed: object = sender.get("failed")
    capacity = _number(sender.get("window")) * span  # slot-seconds the sender had

    def per_slot_time(key: str) -> str:
        value: object = sender.get(key)
        return _share(value / capacity) if _is_number(value) and capacity > 0 else "n/a"

    counted = attempts if _is_number(attempts) and attempts > 0 else None
    seen = failed / counted if counted is not None and _is_number(failed) else None
    return [
        sender.get("name"),
        sender.get("window"),
        sender.get("rate"),
        _count(attempts),
        _share(counted / total_attempts) if counted is not None and total_attempts else "n/a",
        _count(sender.get("sent")),
        _count(sender.get("failed")),
        _share(sender.get("fail_rate")),
        _share(seen),
        per_slot_time("busy_s"),
        per_slot_time("capped_s"),
        _count(sender.get("throttled", 0)),
        _count(sender.get("interrupted", 0)),
        _seconds(sender.get("down_s", 0), "n/a"),
        _seconds(sender.get("p50_s"), "n/a"),
        _seconds(sender.get("p95_s"), "n/a"),
        _seconds(sender.get("p99_s"), "n/a"),
    ]


REPLICATED = [  # (aggregate key, label, kind)
    ("sim_elapsed_s", "elapsed, simulated", "seconds"),
    ("reach_s.50", "50% sent at", "seconds"),
    ("reach_s.90", "90% sent at", "seconds"),
    ("reach_s.99", "99% sent at", "seconds"),
    ("reach_s.100", "100% sent at", "seconds"),
    ("within_deadline", "sent within the deadline", "share"),
]


def _replications_section(summary: Summary) -> str:
    replications, aggregate = summary.get("replications"), summary.get("aggregate")
    if not replications:
        return ""
    aggregate = aggregate if isinstance(aggregate, dict) else {}
    rows = [_replicated_row(label, kind, aggregate.get(key)) for key, label, kind in REPLICATED]
    table = _table(["figure", "mean", "95% interval", "min", "max", "n"], rows)
    charts = _chart_box(
        "replications",
        "Spread across replications, in time",
        "Each dot is one replication's simulated elapsed time or reach time.",
        True,
        "",
    )
    if any(isinstance(r, dict) and "within_deadline" in r for r in replications):
        charts += _chart_box(
            "replications-deadline",
            "Spread across replications, within the deadline",
            "Each dot is the share of one replication's messages sent by the deadline; the dashed line is the target.",
            True,
            "",
        )
    return (
        f'<section id="replications"><h2>{len(replications):,} replications</h2>'
        f'<p class="hint">Everything above this section is replication 1\'s; here are all of them. '
        f"The interval is the mean's 95% confidence interval (Student's t); n counts the "
        f"replications that reached the figure.</p>{table}{charts}</section>"
    )


# ---- smsbatch plan and smsbatch compare: their section above the run they drew ----


def _plan_section(summary: Summary) -> str:
    """The search of `smsbatch plan`: the share of replications meeting the
    deadline against the knob, with its Wilson intervals, and every candidate."""
    plan = summary.get("plan")
    if not isinstance(plan, dict):
        return ""
    knob = _text(plan.get("knob")) or "the knob"
    candidates = [c for c in _list(plan.get("candidates")) if isinstance(c, dict) and _is_number(c.get("value"))]
    answer = plan.get("answer")
    said = (
        f"{knob} = {_plain(answer)}: the {'largest' if plan.get('looking_for') == 'largest' else 'smallest'} value"
        f" whose replications meet the deadline with probability at least {_share(plan.get('probability'))}"
        if _is_number(answer)
        else f"No value of {knob} in the range meets the deadline with probability {_share(plan.get('probability'))}"
    )
    drawn = "the answer" if _is_number(answer) else "the best value probed"
    rows: list[list[object]] = [
        [
            _plain(c.get("value")),
            _count(c.get("replications")),
            f"{_count(c.get('met'))} of {_count(c.get('replications'))}",
            _interval(c.get("met_ci95")),
            _seconds(c.get("delivered_90_mean_s")),
            f"{_seconds(c.get('delivered_90_worst_s'))} (seed {c.get('worst_seed')})",
            _text(c.get("verdict")) or "n/a",
        ]
        for c in candidates
    ]
    table = _table(["value", "replications", "met", "Wilson 95%", "90% mean", "90% worst", "verdict"], rows)
    return (
        f'<section id="plan"><h2>Plan: {_h(knob)}</h2>'
        f'<p class="verdict {"met" if _is_number(answer) else "missed"}">{_h(said)}</p>'
        f'<p class="hint">Each candidate ran the same replication seeds (common random numbers). The dots are the '
        f"share of its replications that met the deadline, the bars its Wilson 95% interval, the dashed line the "
        f"probability asked for. Everything below this section is replication 1 of {drawn}.</p>"
        f"{_plan_chart(candidates, plan.get('probability'))}{table}</section>"
    )


def _interval(value: object) -> str:
    pair = _list(value)
    return f"[{_share(pair[0])}, {_share(pair[1])}]" if len(pair) == 2 else "n/a"


def _plan_chart(candidates: list[JsonObject], probability: object, width: int = 640, height: int = 220) -> str:
    """An inline SVG (no script): share meeting the deadline against the knob."""
    if not candidates:
        return ""
    left, right, top, bottom = 48, 16, 12, 32
    values = [float(c["value"]) for c in candidates]
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return left + (value - low) / span * (width - left - right) if high > low else (left + width - right) / 2

    def y(share: float) -> float:
        return top + (1.0 - share) * (height - top - bottom)

    parts = [f'<line x1="{left}" y1="{y(s):.1f}" x2="{width - right}" y2="{y(s):.1f}" stroke="#d8dee4"/>'
             f'<text x="{left - 6}" y="{y(s) + 4:.1f}" text-anchor="end" font-size="11">{s:.0%}</text>'
             for s in (0.0, 0.5, 1.0)]  # fmt: skip
    if _is_number(probability):
        parts.append(
            f'<line x1="{left}" y1="{y(probability):.1f}" x2="{width - right}" y2="{y(probability):.1f}"'
            f' stroke="#bf8700" stroke-dasharray="5 4"/>'
        )
    for c in candidates:
        pair = [v for v in _list(c.get("met_ci95")) if _is_number(v)]
        runs, met = c.get("replications"), c.get("met")
        if len(pair) != 2 or not _is_number(runs) or not _is_number(met):
            continue
        cx = x(float(c["value"]))
        colour = "#1a7f37" if c.get("verdict") == "feasible" else "#cf222e"
        share = met / runs if runs else 0.0
        parts.append(
            f'<line x1="{cx:.1f}" y1="{y(pair[0]):.1f}" x2="{cx:.1f}" y2="{y(pair[1]):.1f}"'
            f' stroke="{colour}" stroke-width="2"/><circle cx="{cx:.1f}" cy="{y(share):.1f}" r="4" fill="{colour}">'
            f"<title>{_h(_plain(c['value']))}: {_h(_count(met))} of {_h(_count(runs))}</title></circle>"
            f'<text x="{cx:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">'
            f"{_h(_plain(c['value']))}</text>"
        )
    return (
        f'<svg class="plan-chart" role="img" aria-label="share of replications meeting the deadline, by value"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'
    )


COMPARED_LABELS = {
    "delivered_reach_s.50": ("50% delivered at", "seconds"),
    "delivered_reach_s.90": ("90% delivered at", "seconds"),
    "delivered_reach_s.99": ("99% delivered at", "seconds"),
    "within_deadline": ("within the deadline", "share"),
    "sim_elapsed_s": ("elapsed, simulated", "seconds"),
}


def _compare_section(summary: Summary) -> str:
    """`smsbatch compare`: each figure's means and the difference b - a with its interval."""
    compare = summary.get("compare")
    if not isinstance(compare, dict):
        return ""
    paired = compare.get("common_random_numbers") is True
    rows: list[list[object]] = []
    for key, metric in _dict(compare.get("metrics")).items():
        if not isinstance(metric, dict):
            continue
        label, kind = COMPARED_LABELS.get(key, (key, "seconds"))
        show = FORMATS[kind]
        difference = _dict(metric.get("difference"))
        rows.append([
            label, show(metric.get("a_mean")), show(metric.get("b_mean")),
            show(difference.get("mean")) if difference else "n/a",
            " to ".join(show(v) for v in _list(difference.get("ci95"))) if difference else "not reached on both sides",
            _count(metric.get("n")),
        ])  # fmt: skip
    how = (
        "Both ran the same replication seeds (common random numbers): the interval is the paired-t 95% interval."
        if paired
        else "B ran seeds of its own (--independent): the interval is Welch's 95% interval."
    )
    return (
        f'<section id="compare"><h2>Compare: b - a</h2><p>a = {_h(compare.get("a"))}<br>b = {_h(compare.get("b"))}</p>'
        f'<p class="hint">{_h(how)} {_count(compare.get("replications"))} replications each. Everything below this '
        f"section is a's replication 1.</p>"
        f"{_table(['figure', 'a mean', 'b mean', 'b - a', '95% interval', 'pairs' if paired else 'n'], rows)}</section>"
    )


def _replicated_row(label: str, kind: str, stats: object) -> list[object]:
    if not isinstance(stats, dict):
        return [label, "not in this summary", "", "", "", ""]
    if stats.get("n") == 0:  # no replication reached it (100% with failures and no retries, say)
        return [label, "never", "", "", "", 0]
    show = FORMATS[kind]
    ci95 = stats.get("ci95")
    low_high = ci95 if isinstance(ci95, list) else [None, None]
    interval = f"{show(low_high[0])} to {show(low_high[1])}" if len(low_high) == 2 else "n/a"
    return [
        label,
        show(stats.get("mean")),
        interval,
        show(stats.get("min")),
        show(stats.get("max")),
        _count(stats.get("n")),
    ]


def _footer() -> str:
    return (
        f"<footer>Made by smsbatch {_h(__version__)}. Charts: uPlot {UPLOT_VERSION} (MIT licence), "
        f"inlined; this page loads nothing from the network.</footer>"
    )


# ---- chart data: what report.js draws ----


def sender_groups(senders: list[JsonObject]) -> list[tuple[str, list[int]]]:
    """(label, sender indexes) per charted series: every sender, or beyond
    CHARTED_SENDERS the busiest CHARTED_SENDERS - 1 (in their given order) and
    one "others" group, so the page stays small and readable."""
    if len(senders) <= CHARTED_SENDERS:
        return [(sender.get("name", f"sender {i + 1}"), [i]) for i, sender in enumerate(senders)]
    by_attempts = sorted(range(len(senders)), key=lambda i: -_number(senders[i].get("attempts")))
    busiest = sorted(by_attempts[: CHARTED_SENDERS - 1])
    others = sorted(by_attempts[CHARTED_SENDERS - 1 :])
    return [(senders[i]["name"], [i]) for i in busiest] + [(f"others ({len(others)} senders)", others)]


def chart_data(summary: Summary, groups: list[tuple[str, list[int]]]) -> JsonObject:
    senders = summary.get("senders") or []
    return {
        "messages": summary.get("messages"),
        "deadline_s": _compact(summary.get("deadline_s")),
        "deadline_share": _compact(summary.get("deadline_share")),
        "reach_s": {mark: _compact(_dict(summary.get("reach_s")).get(mark)) for mark in REACH_MARKS},
        "groups": [label for label, _ in groups],
        "receipts_modelled": summary.get("receipts_modelled") is True,
        "outages": outage_spans(senders),
        "timeline": timeline_series(summary.get("timeline"), senders, groups),
        "histograms": [histogram_bars(_merged_histogram(senders, members)) for _, members in groups],
        "replications": replication_series(summary.get("replications")),
    }


def outage_spans(senders: list[JsonObject]) -> list[JsonObject]:
    """Every sender's outages, for the time charts' shading: {label, start, end}."""
    spans = []
    for sender in senders:
        outages = sender.get("outages_s")
        for outage in outages if isinstance(outages, list) else []:
            if isinstance(outage, list) and len(outage) == 2 and all(_is_number(v) for v in outage):
                spans.append({"label": f"{sender.get('name')} down", "start": outage[0], "end": outage[1]})
    return spans


def timeline_series(
    timeline: object, senders: list[JsonObject], groups: list[tuple[str, list[int]]]
) -> JsonObject | None:
    """The timeline as columns (what uPlot draws), senders summed into their groups."""
    if not isinstance(timeline, dict) or not timeline.get("rows"):
        return None
    names = timeline["columns"]
    columns = dict(zip(names, map(list, zip(*timeline["rows"], strict=False)), strict=False))

    def column(name: str) -> list[Number | None] | None:
        values = columns.get(name)
        return None if values is None else [_compact(v) for v in values]

    def summed(members: list[int], suffix: str) -> list[Number | None] | None:
        found = [
            columns[f"{senders[i]['name']}:{suffix}"] for i in members if f"{senders[i]['name']}:{suffix}" in columns
        ]
        return [_compact(sum(_number(v) for v in values)) for values in zip(*found, strict=False)] if found else None

    def per_bin(name: str) -> list[Number | None] | None:
        """A cumulative column as counts per bin."""
        values = columns.get(name)
        if values is None or not any(_number(v) for v in values):
            return None
        totals = [_number(v) for v in values]
        return [_compact(b - a) for a, b in zip([0.0, *totals], totals, strict=False)]

    everyone = list(range(len(senders)))
    attempts = [summed(members, "attempts") for _, members in groups]
    failed_attempts = summed(everyone, "failed_attempts")
    keys = ("t_s", "sent", "failed", "retried", "backlog", "p50_s", "p95_s", "p99_s", "delivered")
    return {
        **{key: column(key) for key in keys},
        "failed_attempts": failed_attempts,
        "attempts": attempts,
        "in_flight": [summed(members, "in_flight") for _, members in groups],
        "rate": rate_bins(column("t_s") or [], attempts, failed_attempts, per_bin("throttled")),
    }


def rate_bins(
    t_s: list[Number | None],
    attempts: list[list[Number | None] | None],
    failed: list[Number | None] | None,
    throttled: list[Number | None] | None = None,
) -> JsonObject:
    """Per-bin counts for a rate chart, `RATE_POINTS` bins at most: runs of
    consecutive bins summed, each ending where its last bin ends (report.js
    divides by the merged width), so no count is lost and a peak is a real one."""
    width = max(1, math.ceil(len(t_s) / RATE_POINTS))
    ends = list(range(width - 1, len(t_s), width))
    if t_s and ends[-1] != len(t_s) - 1:
        ends.append(len(t_s) - 1)

    def merged(values: list[Number | None] | None) -> list[Number | None] | None:
        if values is None:
            return None
        starts = [0] + [end + 1 for end in ends[:-1]]
        return [_compact(sum(_number(v) for v in values[a : b + 1])) for a, b in zip(starts, ends, strict=False)]

    return {
        "t_s": [t_s[end] for end in ends],
        "attempts": [merged(values) for values in attempts],
        "failed_attempts": merged(failed),
        "throttled": merged(throttled),
    }


def _merged_histogram(senders: list[JsonObject], members: list[int]) -> dict[float, float]:
    merged: dict[float, float] = {}
    for index in members:
        histogram = senders[index].get("histogram")
        for pair in histogram if isinstance(histogram, list) else []:
            if isinstance(pair, list) and len(pair) == 2 and _is_number(pair[0]) and _is_number(pair[1]):
                merged[pair[0]] = merged.get(pair[0], 0) + pair[1]
    return merged


def bucket_edges(seconds: float) -> tuple[float, float]:
    """The send times a two-significant-figure bucket stands for (smsbatch.core.stats
    rounds to it): 0.24 is [0.235, 0.245); 1.0 is [0.995, 1.05)."""
    if seconds <= 0:
        return 0.0, 0.0
    exponent = math.floor(math.log10(seconds))
    mantissa = round(seconds / 10.0 ** (exponent - 1))
    if mantissa >= 100:
        mantissa, exponent = 10, exponent + 1
    step = 10.0 ** (exponent - 1)
    below = step / 20 if mantissa == 10 else step / 2  # 0.99's bucket ends where 1.0's starts
    return seconds - below, seconds + step / 2


def histogram_bars(buckets: dict[float, float]) -> JsonObject | None:
    """Bars of equal width from 0 to the slowest send: the buckets are two
    significant figures wide (0.01 s below 1 s, 0.1 s above), so each is shared
    among the bars it overlaps, in proportion, rather than drawn with a jump
    at every power of ten."""
    if not buckets:
        return None
    edges = {seconds: bucket_edges(seconds) for seconds in buckets}
    top = max(high for _, high in edges.values())
    width = nice_step(top / HISTOGRAM_BINS) if top > 0 else 1.0
    bars = [0.0] * max(1, math.ceil(top / width - 1e-9))
    for seconds, count in buckets.items():
        low, high = edges[seconds]
        _spread(bars, width, low, high, count)
    return {
        "width": _compact(width),
        "x": [_compact((i + 0.5) * width) for i in range(len(bars))],
        "y": [_compact(round(count, 1)) for count in bars],
    }


def _spread(bars: list[float], width: float, low: float, high: float, count: float) -> None:
    if high <= low:
        bars[min(len(bars) - 1, int(low / width))] += count
        return
    first, last = int(low / width), min(len(bars) - 1, int(high / width))
    for index in range(first, last + 1):
        overlap = min(high, (index + 1) * width) - max(low, index * width)
        if overlap > 0:
            bars[index] += count * overlap / (high - low)


def nice_step(rough: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at least `rough`: bar widths a reader can add up."""
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough * (1 - 1e-12))


def replication_series(replications: list[JsonObject] | None) -> JsonObject | None:
    if not replications:
        return None
    reaches = [_dict(r.get("reach_s")) for r in replications]
    series: JsonObject = {
        "n": [r["replication"] if _is_count(r.get("replication")) else i + 1 for i, r in enumerate(replications)],
        "sim_elapsed_s": [_compact(r.get("sim_elapsed_s")) for r in replications],
        **{f"reach_s.{p}": [_compact(reach.get(p)) for reach in reaches] for p in ("50", "90", "99", "100")},
    }
    if any("within_deadline" in r for r in replications):
        series["within_deadline"] = [_compact(r.get("within_deadline")) for r in replications]
    return series


def _compact(value: object) -> Number | None:
    """A number as the charts need it: CHART_DIGITS significant figures, whole
    numbers without ".0" (the page's size is mostly these); non-numbers as null."""
    if not _is_number(value):
        return None
    if isinstance(value, int):
        return value
    rounded = float(f"{value:.{CHART_DIGITS}g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded
