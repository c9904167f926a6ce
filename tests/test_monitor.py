import io
import json
from dataclasses import replace

from smsbatch.core.clock import FakeClock
from smsbatch.core.settings import SenderSpec
from smsbatch.core.snapshot import SenderView, Snapshot, model_check
from smsbatch.core.stats import Stats
from smsbatch.core.summary import summary_dict
from smsbatch.present.monitor import (
    BarDisplay,
    LineDisplay,
    Monitor,
    NullDisplay,
    faithful_line,
    make_display,
    progress_line,
    sender_line,
    summary_table,
    write_summary_json,
)


def stats(*records):
    s = Stats()
    for seconds, ok in records:
        s.record(seconds, ok)
    return s


def snapshot(elapsed=10.0, speed=1.0):
    a = stats((0.5, True), (0.7, True), (0.3, False))
    b = stats((2.0, True))
    views = (
        SenderView("gw-a", SenderSpec(0.5, 0.25), a, "running"),
        SenderView("gw-b", SenderSpec(2.0, 0.0), b, "died (SIGKILL)"),
    )
    return Snapshot(
        messages=10,
        sent=3,
        failed=1,
        retried=0,
        elapsed=elapsed,
        speed=speed,
        stats=a + b,
        senders=views,
        requeued=2,
        lost_senders=1,
        sim_elapsed=elapsed * speed,
    )


def test_progress_line_has_the_figures():
    line = progress_line(snapshot())
    assert "4/10 (40.0%)" in line
    assert "sent 3 failed 1" in line
    assert "avg 0.875s/msg" in line  # (0.5 + 0.7 + 0.3 + 2.0) / 4, failures included
    assert "0.4 msg/s" in line
    assert "eta 15.0s" in line


def test_times_are_simulated():
    fast = snapshot(elapsed=0.1, speed=100)
    assert progress_line(fast) == progress_line(snapshot())


def test_monitor_redraws_once_per_interval():
    clock, out = FakeClock(), io.StringIO()
    monitor = Monitor(LineDisplay(out), interval=2.0, clock=clock)
    for _ in range(50):  # 5 s in steps of 0.1 s
        monitor.tick(snapshot)
        clock.advance(0.1)
    assert out.getvalue().count("\n") == 3  # at 0, 2 and 4 s
    assert monitor.due_in() > 0


def test_bar_display_draws_a_bar_and_a_line_per_sender():
    out = io.StringIO()
    display = BarDisplay(out, messages=10, sender_count=2)
    display.draw(snapshot())
    text = out.getvalue()
    assert "4/10" in text
    assert "gw-a (mean 0.5s, fail 25%)" in text
    assert "died (SIGKILL)" in text
    display.close()  # the bars go; the last state stays as plain lines
    last_lines = out.getvalue().splitlines()[-3:]
    assert last_lines[0] == progress_line(snapshot())
    assert "gw-b (mean 2s, fail 0%)" in last_lines[2]


def test_bars_grow_a_line_for_a_sender_that_joins():
    out = io.StringIO()
    display = BarDisplay(out, messages=10, sender_count=0)  # a coordinator with no senders yet
    snap = snapshot()
    display.draw(snap)
    assert len(display.lines) == len(snap.senders) == 2
    display.close()
    assert "gw-b (mean 2s, fail 0%)" in out.getvalue().splitlines()[-1]


def test_display_choice():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(make_display(io.StringIO(), True, 10, 1), LineDisplay)
    assert isinstance(make_display(Tty(), True, 10, 1), BarDisplay)
    assert isinstance(make_display(Tty(), False, 10, 1), NullDisplay)


def test_summary_table_and_json(tmp_path):
    snap = snapshot()
    table = summary_table(snap, seed=42, stopped_by="completed")
    assert "messages 10 = sent 3 + failed 1 + unsent 6" in table
    assert "gw-a" in table
    assert "died (SIGKILL)" in table
    path = tmp_path / "s.json"
    write_summary_json(str(path), summary_dict(snap, 42, "completed", 1, 10))
    data = json.loads(path.read_text())
    assert {"messages", "sent", "failed", "unsent", "avg_send_time_s", "elapsed_s", "seed", "senders"} <= set(data)
    assert data["sent"] + data["failed"] + data["unsent"] == data["messages"] == 10
    assert [s["name"] for s in data["senders"]] == ["gw-a", "gw-b"]
    assert {"name", "mean_s", "fail_rate", "sent", "failed", "avg_send_time_s"} <= set(data["senders"][0])
    assert data["lost_senders"] == 1
    # Attempts are counted as attempts, in words too: the table's failed column is not the messages' failed.
    assert data["failed_attempts"] == sum(s["failed"] for s in data["senders"]) == snap.stats.failed
    assert f"failed attempts {snap.stats.failed}," in table
    header = next(line for line in table.splitlines() if line.startswith("  sender "))
    assert header.split()[6:8] == ["failed", "attempts"], table
    assert data["requeued"] == 2


def test_the_live_line_of_a_sender_counts_failed_attempts_as_attempts():
    snap = snapshot()
    view = snap.senders[0]
    assert view.stats.failed == 1
    assert f"{view.stats.sent} sent, 1 failed attempt, avg" in sender_line(view, 10.0)


def alike(count: int) -> Stats:
    s = Stats()
    s.record_same(0.1, count, 0)
    return s


def model_snap(sim_elapsed=100.0, reach=None, sent=990, failed=10, attempts=(700, 300), lag=0.0):
    views = tuple(SenderView(f"gw-{i}", SenderSpec(0.1, 0.01), alike(n), "done") for i, n in enumerate(attempts))
    reach = reach or {"50": 40.0, "90": 80.0, "99": 95.0, "100": None}
    return Snapshot(
        messages=1000, sent=sent, failed=failed, retried=0, elapsed=1.0, speed=10.0, stats=Stats(),
        senders=views, sim_elapsed=sim_elapsed, reach=reach, lag=lag,
    )  # fmt: skip


def test_a_late_run_with_the_models_figures_is_faithful_and_one_a_figure_off_is_not():
    model = model_snap()
    within = model_snap(sim_elapsed=102.5, sent=975, failed=25, attempts=(680, 320), lag=30.0)
    late_but_exact = replace(within, model=model_check(within, model))
    assert late_but_exact.model.off == ()
    assert late_but_exact.faithful  # 30 s late, 30% of the run: the old rule said NOT faithful
    assert "model: faithful (every figure within 3% of the model's" in faithful_line(late_but_exact)
    drifted = model_snap(sim_elapsed=104.0, reach={"50": 40.5, "90": 80.0, "99": 95.0, "100": None}, lag=0.5)
    check = model_check(drifted, model)
    assert check.off == ("sim_elapsed 104.0s against the model's 100.0s (+4.0%)",)
    assert not replace(drifted, model=check).faithful  # on time by the lag, but a figure moved
    assert faithful_line(replace(drifted, model=check)).startswith(
        "  model: NOT faithful: sim_elapsed 104.0s against the model's 100.0s (+4.0%) (over 3% off)"
    )
    moved = model_check(model_snap(sent=950, failed=50, attempts=(600, 400), reach={"50": 40.0}), model)
    assert moved.off == (
        "reach 90% never against the model's 80.0s",
        "reach 99% never against the model's 95.0s",
        "sent 950 against the model's 990",
        "failed 50 against the model's 10",
        "gw-0 attempts 600 against the model's 700",
        "gw-1 attempts 400 against the model's 300",
    )
    assert summary_dict(replace(drifted, model=check), 1, "completed", 0, 1000)["model_check"]["off"] == list(check.off)
    # Reached on one side only, the counts within 3%: the count is the figure, and it is right (was: NOT faithful).
    every = model_snap(sent=1000, failed=0, reach={"50": 40.0, "90": 80.0, "99": 95.0, "100": 99.0})
    assert model_check(every, model).off == ()
