"""Accounts: a cap shared by several senders (`--account NAME:rate=R`, `account=NAME`).

Figures are checked against arithmetic; the trace tests (tests/test_trace.py)
hold both engines to a slow reference loop with accounts in it.
"""

import io
import json

import pytest
from conftest import refused

from smsbatch.cli import main
from smsbatch.config import parse_settings
from smsbatch.core.sender_model import SenderModel, account_caps
from smsbatch.virtual.engine import VirtualEngine


def simulate(*args):
    settings = parse_settings(["--speed", "max", *args])
    models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
    return VirtualEngine(models, settings.messages, accounts=account_caps(settings)).run()


def test_two_binds_of_one_account_share_its_rate():
    outcome = simulate("-n", "1000", "--account", "a:rate=10", "--sender", "0:0:account=a", "--sender", "0:0:account=a")
    assert outcome.sim_elapsed == pytest.approx(999 / 10, rel=1e-12)
    assert [s.attempts for s in outcome.stats] == [1000, 0]  # at every opening both are free: the lower index


def test_an_account_counts_segments_and_a_senders_own_rate_still_holds():
    text = "x" * 400  # 3 segments
    outcome = simulate("-n", "100", "--account", "a:rate=30", "--sender", "0:0:account=a:rate=5", "--text", text)
    assert outcome.sim_elapsed == pytest.approx(99 * 3 / 5, rel=1e-12)  # its own 5 segments/s bind first
    outcome = simulate("-n", "100", "--account", "a:rate=6", "--sender", "0:0:account=a:rate=30", "--text", text)
    assert outcome.sim_elapsed == pytest.approx(99 * 3 / 6, rel=1e-12)


def test_busy_binds_take_turns_at_the_accounts_openings():
    # Sends of 0.15 s, one at a time, an account of 10 a second: the first bind is busy at the
    # next opening, so the second takes it; together they send at the account's rate.
    outcome = simulate(
        "-n", "200", "--distribution", "constant", "--account", "a:rate=10",
        "--sender", "0.15:0:account=a", "--sender", "0.15:0:account=a",
    )  # fmt: skip
    assert outcome.sim_elapsed == pytest.approx(199 / 10 + 0.15, rel=1e-12)
    assert [s.attempts for s in outcome.stats] == [100, 100]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--account", "a:rate=10", "--sender", "0:0"], "argument --account: no sender uses 'a'"),
        (["--sender", "0:0:account=b"], "account=b names no --account"),
        (["--account", "a:rate=0", "--sender", "0:0:account=a"], "argument --account: rate must be a number"),
        (["--account", "a", "--sender", "0:0:account=a"], "argument --account: must be NAME:rate=R"),
        (["--account", "a:rate=1", "--account", "a:rate=2", "--sender", "0:0:account=a"], "'a' is given twice"),
        (
            ["--account", "a:rate=1", "--sender", "0:0:account=a", "--broker", "redis://127.0.0.1:1/0"],
            "argument --account: shared accounts run on one machine only",
        ),
    ],
)
def test_bad_accounts_are_one_line_and_nothing_starts(argv, says, tmp_path):
    refused(argv, says, tmp_path)


def test_a_config_file_lists_accounts(tmp_path):
    config = tmp_path / "c.ini"
    config.write_text("[smsbatch]\naccount = [a:rate=30, b:rate=100]\nsender = [0:0:account=a, 0:0:account=b]\n")
    settings = parse_settings(["-c", str(config)])
    assert [(a.name, a.rate) for a in settings.accounts] == [("a", 30.0), ("b", 100.0)]
    assert [s.account for s in settings.senders] == ["a", "b"]


@pytest.mark.timeout(60)
def test_real_time_keeps_to_a_shared_account(tmp_path, no_children_left):
    # Processes share the account's cap through shared memory: the run takes the model's time.
    argv = ["-n", "300", "--account", "a:rate=100", "--sender", "0.02:0:window=2:account=a"]
    argv += ["--sender", "0.02:0:window=2:account=a", "--distribution", "constant", "--seed", "1", "--no-progress"]
    figures = {}
    for speed in ("max", "10"):
        path = tmp_path / f"{speed}.json"
        assert main([*argv, "--speed", speed, "--summary-json", str(path)], stdout=io.StringIO()) == 0
        figures[speed] = json.loads(path.read_text())
    assert figures["max"]["sim_elapsed_s"] == pytest.approx(299 / 100 + 0.02, rel=1e-9)
    assert figures["10"]["sim_elapsed_s"] == pytest.approx(figures["max"]["sim_elapsed_s"], rel=0.03)
    assert figures["10"]["sent"] == 300
