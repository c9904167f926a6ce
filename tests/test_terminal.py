"""What a terminal shows: an honest ETA, and a live display that leaves no fragments."""

import math

from smsbatch.monitor import Snapshot, progress_line, seconds_text
from smsbatch.stats import Stats


def snap(messages=100, sent=0, failed=0, sim_elapsed=0.0, retries_pending=0, retried=0):
    return Snapshot(messages=messages, sent=sent, failed=failed, retried=retried, elapsed=1.0,
                    speed=1.0, stats=Stats(), sim_elapsed=sim_elapsed, retries_pending=retries_pending)


# ---- the ETA ----


def test_eta_is_the_work_left_at_the_rate_of_final_outcomes():
    s = snap(messages=100, sent=40, failed=10, sim_elapsed=10.0)  # 5 outcomes a second, 50 left
    assert s.eta == 10.0
    assert "eta 10.0s" in progress_line(s)


def test_ten_messages_all_waiting_for_retries_are_not_eta_0s():
    # 990 outcomes in 9.9 s: a count alone gives 10 / 100 = 0.1 s, and 0.0s for
    # the last few; but the 10 wait out a backoff the snapshot has no time for.
    s = snap(messages=1000, sent=980, failed=10, sim_elapsed=9.9, retries_pending=10, retried=10)
    assert s.unsent == 10
    assert math.isinf(s.eta)
    assert "eta ?" in progress_line(s) and "eta 0.0s" not in progress_line(s)


def test_the_last_retry_alone_still_has_no_eta_of_0s():
    s = snap(messages=1000, sent=999, sim_elapsed=5.0, retries_pending=1, retried=3)
    assert seconds_text(s.eta) == "?"


def test_eta_is_unknown_before_the_first_outcome():
    assert seconds_text(snap(sim_elapsed=0.0).eta) == "?"
    assert seconds_text(snap(sim_elapsed=3.0).eta) == "?"  # time passes, nothing finished yet


def test_eta_is_0s_when_every_message_has_its_outcome():
    s = snap(messages=10, sent=8, failed=2, sim_elapsed=4.0)
    assert s.eta == 0.0 and "eta 0.0s" in progress_line(s)
