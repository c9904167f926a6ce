"""Hostile inputs are refused at once: a config file that is not text or is
too big, too many senders, a speed so slow that a run cannot move."""

import io

import pytest

import smsbatch.config
from smsbatch.cli import main
from smsbatch.config import MAX_CONFIG_BYTES, MAX_SENDERS, MIN_SPEED, UsageError, parse_settings


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def _refused(argv, *words):
    status, out, err = _run(argv)
    assert status == 2
    assert out == ""  # nothing started: no start line
    assert err.count("\n") == 1
    assert "Traceback" not in err
    for word in words:
        assert word in err
    return err


def test_a_config_file_with_a_nul_byte_is_refused(tmp_path):
    ini = tmp_path / "run.ini"
    ini.write_bytes(b"messages = 5\n\0\0\0\n")
    _refused(["-c", str(ini)], "argument -c/--config", "NUL", str(ini))


def test_a_config_file_bigger_than_the_bound_is_refused_unread(tmp_path):
    ini = tmp_path / "big.ini"
    ini.write_text("messages = 5\n" + "#" * MAX_CONFIG_BYTES + "\n")  # a valid file, only too big
    _refused(["-c", str(ini)], "argument -c/--config", f"{MAX_CONFIG_BYTES:,} bytes", str(ini))


def test_a_config_file_just_under_the_bound_is_read(tmp_path):
    ini = tmp_path / "fine.ini"
    ini.write_text("messages = 5\n" + "#" * (MAX_CONFIG_BYTES - 20) + "\n")
    assert parse_settings(["-c", str(ini)]).messages == 5


@pytest.fixture
def sender_parses(monkeypatch):
    """How many --sender values were parsed (the parser is built after this patch)."""
    calls = []
    real = smsbatch.config.parse_sender

    def counted(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(smsbatch.config, "parse_sender", counted)
    return calls


def test_ten_thousand_senders_are_refused_before_any_is_parsed(sender_parses):
    argv = [arg for _ in range(10_000) for arg in ("--sender", "0.1:0.1")]
    _refused(argv, "argument --sender", f"at most {MAX_SENDERS} senders", "10,000")
    assert sender_parses == []


def test_abbreviated_sender_options_count_too(sender_parses):
    argv = [f"--sende=0.1:0.{i % 10}" for i in range(MAX_SENDERS + 1)]
    _refused(argv, "argument --sender", f"at most {MAX_SENDERS} senders")
    assert sender_parses == []


def test_ten_thousand_senders_in_a_config_file_are_refused_before_any_is_parsed(tmp_path, sender_parses):
    ini = tmp_path / "many.ini"
    ini.write_text("sender = [" + ", ".join(["0.1:0.1"] * 10_000) + "]\n")
    _refused(["-c", str(ini)], "argument --sender", f"at most {MAX_SENDERS} senders", str(ini))
    assert sender_parses == []


def test_the_most_senders_are_still_accepted():
    argv = [arg for _ in range(MAX_SENDERS) for arg in ("--sender", "0.1:0.1")]
    assert len(parse_settings(argv).senders) == MAX_SENDERS


@pytest.mark.parametrize("speed", ["1e-300", "5e-324", "0.0009"])
def test_a_speed_too_slow_to_move_is_refused(speed):
    with pytest.raises(UsageError, match=r"argument --speed: must be a number from 0\.001"):
        parse_settings(["--speed", speed])


def test_the_slowest_speed_still_runs():
    assert parse_settings(["--speed", str(MIN_SPEED)]).speed == MIN_SPEED
    # A run at that speed with nothing to wait for ends at once, every message counted.
    status, out, _ = _run(["--speed", str(MIN_SPEED), "-n", "3", "--sender", "0:0", "--no-progress", "--seed", "1"])
    assert status == 0
    assert "every message accounted for: yes" in out
