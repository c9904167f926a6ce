"""Segments: a message of k SMS segments is k sends in its slot (docs/model.md).

Each figure is checked against arithmetic or against a sum of the sender's
own draws made here, never against the engine's own run of itself.
"""

import io
import json
import math

import numpy as np
import pytest

from smsbatch.cli import main
from smsbatch.config import parse_settings
from smsbatch.core.sender_model import SenderModel, generators
from smsbatch.core.text import sms_segments
from smsbatch.virtual.engine import VirtualEngine

THREE_GSM = "x" * 400  # 153 + 153 + 94
TWO_UCS2 = "🚨 " + "Flash flood: move to higher ground now. " * 2  # UCS-2, over 70 units


def simulate(*args):
    settings = parse_settings(["--speed", "max", *args])
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    return VirtualEngine(models, settings.messages).run(), models


def test_the_texts_have_the_segments_these_tests_assume():
    assert (sms_segments(THREE_GSM).count, sms_segments(THREE_GSM).encoding) == (3, "GSM-7")
    assert (sms_segments(TWO_UCS2).count, sms_segments(TWO_UCS2).encoding) == (2, "UCS-2")


def test_a_cap_counts_segments():
    # 1000 messages of 3 segments at 10 segments a second: starts 0.3 s apart.
    outcome, _ = simulate("-n", "1000", "--sender", "0:0:rate=10", "--text", THREE_GSM)
    assert outcome.sim_elapsed == pytest.approx(999 * 0.3, rel=1e-12)


def test_constant_sends_take_a_draw_per_segment():
    outcome, _ = simulate("-n", "100", "--sender", "1:0:window=10", "--distribution", "constant", "--text", TWO_UCS2)
    assert outcome.sim_elapsed == 20.0  # 10 rounds of 2 s
    assert outcome.stats[0].mean == 2.0


def test_a_send_time_is_the_sum_of_its_segments_draws():
    settings = parse_settings(["--sender", "0.2:0.1", "--distribution", "exponential", "--text", THREE_GSM])
    model = SenderModel(settings.senders[0], settings, 0)
    times, _ = model.block(50)
    rng = generators(settings.seed, 0)[0]  # the sender's own send-time stream, drawn here by hand
    by_hand = [sum(rng.exponential(0.2, 3).tolist()) for _ in range(50)]
    assert times.tolist() == pytest.approx(by_hand, rel=1e-15)


@pytest.mark.parametrize("fail_rate", [0.05, 0.3])
def test_an_attempt_fails_when_any_segment_fails(fail_rate):
    outcome, _ = simulate("-n", "20000", "--sender", f"0:{fail_rate}", "--text", THREE_GSM, "--seed", "4")
    expected = 1 - (1 - fail_rate) ** 3
    share = outcome.failed / 20000
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / 20000)


def test_one_segment_is_the_model_of_before():
    # A one-segment text draws exactly what a sender drew before segments were simulated.
    settings = parse_settings(["--sender", "0.3:0.2", "--seed", "9"])
    model = SenderModel(settings.senders[0], settings, 0)
    times, failed = model.block(100)
    send_rng, outcome_rng, *_ = generators(9, 0)
    assert np.array_equal(times, send_rng.lognormal(*_lognormal(0.3, settings.spread), 100))
    assert np.array_equal(failed, outcome_rng.random(100) < 0.2)


def _lognormal(mean, spread):
    sigma = math.sqrt(math.log1p(spread * spread))
    return math.log(mean) - sigma * sigma / 2.0, sigma


@pytest.mark.timeout(60)
def test_real_time_gives_the_models_answer_with_segments(tmp_path, no_children_left):
    argv = ["-n", "300", "--sender", "0.05:0.1:window=4", "--sender", "0:0:rate=40", "--text", THREE_GSM]
    argv += ["--seed", "2", "--max-retries", "1", "--no-progress"]
    figures = {}
    for speed in ("max", "20"):
        path = tmp_path / f"{speed}.json"
        status = main(
            [*argv, "--speed", speed, "--summary-json", str(path)], stdout=io.StringIO(), stderr=io.StringIO()
        )
        assert status == 0
        figures[speed] = json.loads(path.read_text())
    virtual, real = figures["max"], figures["20"]
    assert real["faithful"] is True
    assert real["sim_elapsed_s"] == pytest.approx(virtual["sim_elapsed_s"], rel=0.03)
    assert real["segments"] == virtual["segments"] == 3
