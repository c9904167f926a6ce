import io
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsbatch.cli import main
from smsbatch.config import DEFAULT_SENDERS, SenderSpec, UsageError, parse_sender, parse_settings


def test_defaults():
    settings = parse_settings([])
    assert settings.messages == 1000
    assert len(settings.senders) == len(DEFAULT_SENDERS)
    assert [s.name for s in settings.senders] == [f"sender {i}" for i in range(1, 5)]
    assert settings.interval == 1.0
    assert settings.speed == 1.0
    assert not settings.seed_given
    assert settings.seed >= 0


def test_default_senders_finish_1000_messages_in_about_30_seconds():
    settings = parse_settings([])
    throughput = sum(1 / s.mean for s in settings.senders)
    assert 1000 / throughput <= 30


def test_ini_file_with_sender_list(tmp_path):
    ini = tmp_path / "run.ini"
    ini.write_text("[smsbatch]\nmessages = 50\nsender = [3:0.1, 0.5:0.25]\nspeed = 20\n")
    settings = parse_settings(["-c", str(ini)])
    assert settings.messages == 50
    assert settings.speed == 20
    assert [(s.mean, s.fail_rate) for s in settings.senders] == [(3, 0.1), (0.5, 0.25)]


def test_command_line_beats_env_beats_file(tmp_path, monkeypatch):
    ini = tmp_path / "run.ini"
    ini.write_text("messages = 50\ninterval = 3\nspeed = 7\n")
    monkeypatch.setenv("SMSBATCH_MESSAGES", "60")
    monkeypatch.setenv("SMSBATCH_INTERVAL", "4")
    settings = parse_settings(["-c", str(ini), "--messages", "70"])
    assert (settings.messages, settings.interval, settings.speed) == (70, 4, 7)


def test_env_var_sender_list(monkeypatch):
    monkeypatch.setenv("SMSBATCH_SENDER", "[1:0, 2:0.5:name=slow]")
    settings = parse_settings([])
    assert [s.name for s in settings.senders] == ["sender 1", "slow"]


def test_sender_spec_fields():
    spec = parse_sender("1:0.05:window=1000:rate=500:name=gw:distribution=normal:spread=0.2")
    assert spec == SenderSpec(1.0, 0.05, name="gw", distribution="normal", spread=0.2, window=1000, rate=500.0)
    assert parse_sender("0:0") == SenderSpec(0.0, 0.0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "1",
        "1:",
        ":0.1",
        "x:0.1",
        "1:x",
        "-1:0.1",
        "1:1.5",
        "1:-0.1",
        "nan:0.1",
        "1:nan",
        "inf:0",
        "1:0:bogus=1",
        "1:0:window",
        "1:0:window=0",
        "1:0:window=1.5",
        "1:0:rate=0",
        "1:0:rate=-5",
        "1:0:distribution=pareto",
        "1:0:name=",
        "1:0:window=2:window=3",
    ],
)
def test_bad_sender_specs(text):
    with pytest.raises(ValueError):
        parse_sender(text)


@given(st.text(max_size=40))
def test_sender_parser_accepts_or_rejects_cleanly(text):
    try:
        spec = parse_sender(text)
    except ValueError as error:
        rule = str(error)  # a rule, in words
        spec = None
    if spec is None:
        assert rule
        return
    assert math.isfinite(spec.mean)
    assert spec.mean >= 0
    assert 0 <= spec.fail_rate <= 1
    assert spec.window >= 1


@given(st.just(0.0) | st.floats(1e-6, 1e4), st.floats(0, 1, allow_nan=False), st.integers(1, 10_000))
def test_sender_parser_round_trips(mean, fail_rate, window):
    spec = parse_sender(f"{mean!r}:{fail_rate!r}:window={window}")
    assert (spec.mean, spec.fail_rate, spec.window) == (mean, fail_rate, window)


def _run(argv, monkeypatch=None, env=None):
    out, err = io.StringIO(), io.StringIO()
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    status = main(argv, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


BAD_INPUT = [
    # (argv, env, option named in the error)
    (["--messages", "0"], {}, "--messages"),
    (["--messages", "-5"], {}, "--messages"),
    (["--messages", "abc"], {}, "--messages"),
    (["--messages", "1e99"], {}, "--messages"),
    (["--messages", "99999999999999"], {}, "--messages"),
    (["--messages", "2.5"], {}, "--messages"),
    (["--sender", ""], {}, "--sender"),
    (["--sender", "1"], {}, "--sender"),
    (["--sender", "1:2"], {}, "--sender"),
    (["--sender", "nan:0.1"], {}, "--sender"),
    (["--sender", "1:0:colour=red"], {}, "--sender"),
    (["--speed", "0"], {}, "--speed"),
    (["--speed", "-1"], {}, "--speed"),
    (["--speed", "inf"], {}, "--speed"),
    (["--speed", "nan"], {}, "--speed"),
    (["--speed", "fast"], {}, "--speed"),
    (["--speed", "maximum"], {}, "--speed"),
    (["--speed", "max", "--broker", "redis://localhost:6379/0"], {}, "--speed"),
    ([], {"SMSBATCH_SPEED": "0"}, "--speed"),
    (["--replications", "0"], {}, "--replications"),
    (["--replications", "10001"], {}, "--replications"),
    (["--replications", "2.5"], {}, "--replications"),
    (["--replications", "2", "--broker", "redis://localhost:6379/0"], {}, "--replications"),
    (["--jobs", "0"], {}, "--jobs"),
    (["--jobs", "257"], {}, "--jobs"),
    (["--deadline", "0"], {}, "--deadline"),
    (["--deadline", "-5m"], {}, "--deadline"),
    (["--deadline", "10d"], {}, "--deadline"),
    (["--deadline", "soon"], {}, "--deadline"),
    (["--deadline-share", "0"], {}, "--deadline-share"),
    (["--deadline-share", "1.5"], {}, "--deadline-share"),
    (["--report", "/proc/x.html"], {}, "--report"),
    (["--report", "/nonexistent/dir/r.html"], {}, "--report"),
    (["--report", "/tmp/"], {}, "--report"),
    (["--timeline", "/proc/t.csv"], {}, "--timeline"),
    (["--timeline", "/nonexistent/dir/t.csv"], {}, "--timeline"),
    (["--interval", "0"], {}, "--interval"),
    (["--interval", "nan"], {}, "--interval"),
    (["--seed", "-1"], {}, "--seed"),
    (["--seed", "x"], {}, "--seed"),
    (["--distribution", "pareto"], {}, "--distribution"),
    (["--spread", "-1"], {}, "--spread"),
    (["--distribution", "uniform", "--spread", "0.9"], {}, "--spread"),
    (["--region", "XX"], {}, "--region"),
    (["--region", "AQ"], {}, "--region"),
    (["--text", ""], {}, "--text"),
    (["--log", "LOUD"], {}, "--log"),
    (["--max-retries", "-1"], {}, "--max-retries"),
    (["--max-retries", "1000"], {}, "--max-retries"),
    (["--retry-backoff", "inf"], {}, "--retry-backoff"),
    (["--bogus"], {}, "--bogus"),
    (["--broker", "http://localhost:6379"], {}, "--broker"),
    (["--broker", "redis://localhost:99999999/0"], {}, "--broker"),
    (["--broker", "redis://localhost:6379/zero"], {}, "--broker"),
    (["--no-local-senders"], {}, "--no-local-senders"),
    (["--claim-after", "0.5"], {}, "--claim-after"),
    (["--broker-timeout", "-1"], {}, "--broker-timeout"),
    ([], {"SMSBATCH_BROKER": "localhost"}, "--broker"),
    (["-c", "/nonexistent/run.ini"], {}, "/nonexistent/run.ini"),
    (["--summary-json", "/nonexistent/dir/s.json"], {}, "--summary-json"),
    (["--recipients", "/nonexistent/numbers.txt"], {}, "--recipients"),
    (["--recipients", "/tmp"], {}, "--recipients: cannot read /tmp"),  # one line: no "reading ... until it ends"
    ([], {"SMSBATCH_MESSAGES": "many"}, "--messages"),
    ([], {"SMSBATCH_SPEED": "-3"}, "--speed"),
    ([], {"SMSBATCH_SENDER": "[1:0.1, oops]"}, "--sender"),
    ([], {"SMSBATCH_NO_PROGRESS": "maybe"}, "--no-progress: must be true or false"),
    ([], {"SMSBATCH_MESSAGE": "10"}, "SMSBATCH_MESSAGE: no option reads it; did you mean SMSBATCH_MESSAGES?"),
    # numbers too small to mean anything (1/x overflows), and a flood of progress lines
    (["--sender", "1e-320:0"], {}, "--sender"),
    (["--sender", "1:0:rate=1e-320"], {}, "--sender"),
    (["--interval", "1e-9"], {}, "--interval"),
    (["--interval", "0.049"], {}, "--interval"),
    # sender names head columns and rows: one printable line, each once
    (["--sender", "1:0:name=a", "--sender", "2:0:name=a"], {}, "--sender"),
    (["--sender", "1:0:name=sender 2", "--sender", "1:0"], {}, "--sender"),
    (["--sender", "1:0:name=two\nlines"], {}, "--sender"),
    (["--sender", "1:0:name=\x1b[31mred"], {}, "--sender"),
    (["--sender", "1:0:name=" + "n" * 41], {}, "--sender"),
    (["--text", "bytes \udcff not UTF-8"], {}, "--text"),
    ([], {"SMSBATCH_SENDER": "[]"}, "--sender"),
    # output paths, proven writable before the run
    (["--summary-json", "/proc/x.json"], {}, "--summary-json"),
    (["--summary-json", "new.json/"], {}, "--summary-json"),
    (["--summary-json", "."], {}, "--summary-json"),
    (["--summary-json", ""], {}, "--summary-json"),
    (["--broker", "redis://user:secret@localhost:99999999/0"], {}, "--broker"),
    # a value that starts with "-" gets its option's rule, not argparse's "expected one argument"
    (["--deadline", "-5m"], {}, "--deadline: must be a positive duration"),
    (["--validity", "10000h"], {}, "--validity: must be at most a year (8784h) (got '10000h')"),
    (["--sender", "-1:0.1"], {}, "--sender: MEAN must be"),
    (["--retry-backoff", "-.5"], {}, "--retry-backoff: must be a number at least 0"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("argv", "env", "option"), BAD_INPUT, ids=[" ".join(a) or str(e) for a, e, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(argv, env, option, monkeypatch, no_children_left):
    status, out, err = _run(argv, monkeypatch, env)
    assert status == 2
    assert out == ""  # nothing started: not even the start line
    assert err.count("\n") == 1
    assert err.startswith("smsbatch: error: ")
    assert option in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "option"),
    [
        (b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00binary", "--config"),
        (b'{"messages": 5}\n', "{"),
        (b"messages = 5\ncolour = red\n", "colour"),
        (b"messages = -1\n", "--messages"),
        (b"sender = [1:0.1, 2:7]\n", "--sender"),
        (b"messages = 5\nbogus_key = 3\n", "bogus_key"),
        (b"max_retries = 3\n", "max-retries"),
        (b"[smsbatch]\nsender = []\n", "--sender"),
        (b"[other]\nmessages = 5\n", "[other]"),
        (b"[smsbatch worker]\nbroker = redis://localhost:6379/0\n", "[smsbatch worker]"),
        (b"messages = 3\nmessages = 4\n", "messages"),
        (b"no-progress = maybe\n", "--no-progress"),
        (b"messages 5\n", "ini"),
        (b"[smsbatch]\nmessages\n", "needs key = value"),
    ],
)
def test_bad_config_files(tmp_path, content, option, no_children_left):
    ini = tmp_path / "bad.ini"
    ini.write_bytes(content)
    status, out, err = _run(["-c", str(ini)])
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert option in err
    assert "Traceback" not in err


def test_unreadable_config_file(tmp_path, no_children_left):
    import os

    ini = tmp_path / "secret.ini"
    ini.write_text("messages = 5\n")
    ini.chmod(0)
    if os.access(ini, os.R_OK):
        pytest.skip("running as a user who can read anything (root)")
    status, _, err = _run(["-c", str(ini)])
    assert status == 2
    assert err.count("\n") == 1


@pytest.mark.parametrize("content", [b"", b"not a number\nhello\n", b"\x00\x01\x02junk\xff"])
def test_recipients_file_with_no_valid_number(tmp_path, content, no_children_left):
    path = tmp_path / "numbers.txt"
    path.write_bytes(content)
    status, out, err = _run(["--recipients", str(path)])
    assert status == 2
    assert out == ""
    assert "--recipients" in err
    assert err.count("\n") == 1


def test_usage_error_type():
    with pytest.raises(UsageError, match="--messages"):
        parse_settings(["--messages", "0"])


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "--sender" in capsys.readouterr().out


def test_config_path_that_is_a_directory(tmp_path, no_children_left):
    status, out, err = _run(["-c", str(tmp_path)])
    assert status == 2
    assert out == ""
    assert "--config" in err
    assert err.count("\n") == 1


def test_every_shipped_config_parses():
    import glob
    import os

    from smsbatch.config import parse_worker_settings

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = sorted(glob.glob(os.path.join(root, "configs", "*.ini")))
    assert len(paths) >= 4
    for path in paths:
        if os.path.basename(path) == "worker.ini":
            worker = parse_worker_settings(["-c", path])
            assert worker.broker.startswith("redis://")
            assert len(worker.senders) == 2
        else:
            assert parse_settings(["-c", path]).messages > 0


def test_speed_max_from_the_command_line_an_ini_file_or_the_environment(tmp_path, monkeypatch):
    assert parse_settings(["--speed", "MAX"]).virtual
    ini = tmp_path / "run.ini"
    ini.write_text("[smsbatch]\nspeed = max\n")
    assert parse_settings(["-c", str(ini)]).virtual
    monkeypatch.setenv("SMSBATCH_SPEED", "max")
    settings = parse_settings([])
    assert settings.virtual
    assert math.isinf(settings.speed)
    assert not parse_settings(["--speed", "2"]).virtual


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1.5h", 5400.0)]
)
def test_deadlines_read_as_durations(text, seconds):
    assert parse_settings(["--deadline", text]).deadline == seconds


def test_a_long_bad_value_is_shortened_in_its_one_line(capsys):
    status = main(["--text", "x" * 1601])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert len(err) < 200
    assert "argument --text: must be at most 1600 characters" in err
