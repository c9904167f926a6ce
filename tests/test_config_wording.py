"""What smsbatch says about its options and config files: every error names
where the bad value came from, in one line, and nothing shows a password."""

import io

import pytest

from smsbatch import __version__
from smsbatch.cli import main, start_line
from smsbatch.config import Settings, UsageError, parse_sender, parse_settings, parse_worker_settings


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def _ini(tmp_path, text, name="run.ini"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("messages = 5\nbogus_key = 3\n", 2, "keys must be option names"),
        ("# a comment\n\nmessages = -1\n", 3, "must be a whole number"),
        ("[smsbatch]\nsender = [1:0.1, 2:7]\n", 2, "FAIL_RATE"),
        ("[smsbatch]\nsender = []\n", 2, "must not be an empty list"),
        ("[alerts]\nmessages = 5\n", 2, "[alerts]"),
        ("messages = 5\nmessages = 6\n", 2, "each key once"),
        ("text = hello\nmax_retries = 2\n", 2, "max_retries is written max-retries"),
    ],
)
def test_config_errors_name_the_file_and_line(tmp_path, text, line, words, no_children_left):
    path = _ini(tmp_path, text)
    status, out, err = _run(["-c", path])
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert f"{path} line {line}" in err
    assert words in err


def test_a_json_file_as_config_is_not_an_ini_file(tmp_path, no_children_left):
    path = _ini(tmp_path, '{"messages": 10}\n', name="run.json")
    status, _, err = _run(["-c", path])
    assert status == 2
    assert err == (
        f"smsbatch: error: argument -c/--config: must be an ini file of key = value lines; "
        f"{path} line 1 is not (got '{{\"messages\": 10}}')\n"
    )


def test_a_binary_config_file_is_not_a_text_ini_file(tmp_path, no_children_left):
    path = tmp_path / "run.ini"
    path.write_bytes(b"\x7fELF\x02\x01\xff\xfe\x00")
    status, _, err = _run(["-c", str(path)])
    assert status == 2
    assert f"{path} is not a text ini file" in err


def test_empty_sender_list_in_ini_is_bad_input_not_the_built_in_senders(tmp_path):
    with pytest.raises(UsageError, match="--sender: must not be an empty list"):
        parse_settings(["-c", _ini(tmp_path, "sender = []\n")])


def test_main_reads_its_own_section_or_none_and_ignores_empty_others(tmp_path):
    settings = parse_settings(["-c", _ini(tmp_path, "speed = 3\n[notes]\n[SMSBATCH]\nmessages = 7\n")])
    assert (settings.speed, settings.messages) == (3, 7)


def test_worker_reads_only_the_worker_section(tmp_path):
    worker_ini = _ini(tmp_path, "[smsbatch worker]\nbroker = redis://localhost:6379/0\n", "w.ini")
    assert parse_worker_settings(["-c", worker_ini]).broker == "redis://localhost:6379/0"
    with pytest.raises(UsageError, match=r"reads \[smsbatch\] or no section \(got \[smsbatch worker\]"):
        parse_settings(["-c", worker_ini])
    run_ini = _ini(tmp_path, "[smsbatch]\nbroker = redis://localhost:6379/0\n", "r.ini")
    with pytest.raises(UsageError, match=r"smsbatch worker reads \[smsbatch worker\]"):
        parse_worker_settings(["-c", run_ini])


def test_config_values_keep_their_old_forms(tmp_path):
    text = (
        "--messages = 9\nno-progress\nregion: gb\ntext = '[TEST] flood warning'\n"
        "sender = [0.5:0.1:name=a, 1:0:name=b]  # two routes\n"
    )
    settings = parse_settings(["-c", _ini(tmp_path, text)])
    assert settings.messages == 9
    assert not settings.progress
    assert settings.region == "GB"
    assert settings.text == "[TEST] flood warning"
    assert [s.name for s in settings.senders] == ["a", "b"]


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"smsbatch {__version__}\n"


def test_help_shows_real_defaults_not_none(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the help's line wrapping
    assert "(default: None)" not in text
    assert "(default: False)" not in text
    assert "(default: 1000;" in text
    assert "(default: the built-in set 0.05:0.01" in text
    assert "(default: a fresh one, printed)" in text


class _Source:
    messages = 1
    duplicate_numbers = 0


def test_start_line_says_1_message_and_1_sender():
    settings = Settings(messages=1, senders=(parse_sender("0:0"),), seed=3)
    line = start_line(settings, _Source(), invalid=1)
    assert "smsbatch: 1 message to " in line
    assert " through 1 sender, " in line
    assert "(1 invalid line skipped)" in line


def test_names_are_case_insensitive():
    settings = parse_settings(
        ["--distribution", "LOGNORMAL", "--sender", "1:0:distribution=Normal", "--region", "us", "--log", "info"]
    )
    assert settings.distribution == "lognormal"
    assert settings.senders[0].distribution == "normal"
    assert (settings.region, settings.log_level) == ("US", "INFO")


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--broker", "redis://admin:secret@localhost:99999999/0"], {}),
        (["--broker", "ftp://admin:secret@localhost/0"], {}),
        ([], {"SMSBATCH_BROKER": "redis://admin:secret@localhost:6379/zero"}),
        (["--broker", "redis://localhost:6379/x?password=secret"], {}),
    ],
)
def test_a_password_in_a_broker_url_is_never_shown(argv, env, monkeypatch, no_children_left):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, out, err = _run(argv)
    assert status == 2
    assert "secret" not in err + out
    assert "***" in err


def test_start_line_of_a_broker_run_hides_the_password():
    settings = Settings(messages=1, senders=(), broker="redis://admin:secret@redis-host:6379/0")
    line = start_line(settings, _Source(), invalid=0, run_id="abc")
    assert "secret" not in line
    assert "smsbatch worker --broker redis://admin:***@redis-host:6379/0" in line


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("1e-320:0", "MEAN must be 0 or a number from 1e-06 to 86400"),
        ("1:0:rate=1e-320", "rate must be a number at least 1e-06"),
        ("1:0:name=a\tb", "name must be printable characters"),
    ],
)
def test_tiny_numbers_and_unprintable_names_are_refused_in_words(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_sender(spec)


# ---- the rough edges of issue 20: each error says what would fix it ----


def test_uk_is_not_a_region_code_and_the_error_suggests_gb(no_children_left):
    status, out, err = _run(["--region", "UK"])
    assert status == 2
    assert out == ""
    assert err == (
        "smsbatch: error: argument --region: must be a two-letter ISO 3166 region code such as US, GB or DE;"
        " did you mean GB? (got 'UK')\n"
    )


def test_a_list_of_senders_without_brackets_in_a_config_file_is_told_about_the_brackets(tmp_path, no_children_left):
    path = _ini(tmp_path, "sender = 0.1:0.05, 0.2:0.1\n")
    status, _, err = _run(["-c", path])
    assert status == 2
    assert err.count("\n") == 1
    assert f"in {path} line 1; a list is written in brackets: sender = [0.1:0.05, 0.2:0.1]" in err


def test_a_bad_environment_variable_is_named(monkeypatch, no_children_left):
    monkeypatch.setenv("SMSBATCH_MESSAGES", "abc")
    status, out, err = _run([])
    assert status == 2
    assert out == ""
    assert err == (
        "smsbatch: error: argument -n/--messages: must be a whole number from 1 to 1000000000 (got 'abc')"
        " in the environment variable SMSBATCH_MESSAGES\n"
    )
    monkeypatch.setenv("SMSBATCH_SENDER", "0.1:0.05, 0.2:0.1")
    monkeypatch.setenv("SMSBATCH_MESSAGES", "5")
    status, _, err = _run([])
    assert status == 2
    assert "SMSBATCH_SENDER; a list is written in brackets: SMSBATCH_SENDER=[0.1:0.05, 0.2:0.1]" in err


def test_the_command_line_still_beats_a_bad_environment_variable(monkeypatch, no_children_left):
    monkeypatch.setenv("SMSBATCH_MESSAGES", "abc")
    status, _, err = _run(["-n", "5", "--sender", "0:0", "--speed", "max", "--no-progress"])
    assert status == 0, err


BACKOFF_NOTE = "smsbatch: note: --retry-backoff 30 has no effect without --max-retries (no failed attempt is retried)\n"


def test_a_retry_backoff_without_retries_gets_a_one_line_note_and_the_run_goes_on(tmp_path, no_children_left):
    quick = ["-n", "5", "--sender", "0:0", "--speed", "max", "--no-progress"]
    status, out, err = _run([*quick, "--retry-backoff", "30"])
    assert status == 0
    assert err == BACKOFF_NOTE
    assert "5 messages" in out
    path = _ini(tmp_path, "max-retries = 2\nretry-backoff = 30\n")
    assert _run([*quick, "-c", path])[2] == ""
    assert _run([*quick, "-c", path, "--max-retries", "0"])[2] == BACKOFF_NOTE
    assert _run(quick)[2] == ""


@pytest.mark.parametrize(
    ("argv", "option", "rule"),
    [
        (["--report", "out.pdf"], "--report", "must end in .html or .htm"),
        (["--timeline", "t.json"], "--timeline", "must end in .csv"),
    ],
)
def test_an_output_named_for_another_format_is_bad_input(tmp_path, monkeypatch, argv, option, rule, no_children_left):
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(["-n", "5", "--speed", "max", *argv])
    assert status == 2
    assert out == ""
    assert err == (
        f"smsbatch: error: argument {option}: {rule}, the format written, or have no suffix (got {argv[1]!r})\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_report_command_refuses_a_pdf_too(tmp_path, no_children_left):
    status, _, err = _run(["report", str(tmp_path / "s.json"), "-o", str(tmp_path / "r.PDF")])
    assert status == 2
    assert "argument -o/--output: must end in .html or .htm" in err


def test_outputs_with_their_own_suffix_or_none_are_written_and_the_report_is_said(tmp_path, no_children_left):
    report, timeline = tmp_path / "Run.HTML", tmp_path / "timeline"
    quick = ["-n", "5", "--sender", "0:0", "--speed", "max", "--no-progress"]
    status, _, err = _run([*quick, "--report", str(report), "--timeline", str(timeline)])
    assert status == 0
    assert report.read_text().startswith("<!DOCTYPE html>")
    assert timeline.read_text().startswith("t_s,")
    assert err == f"smsbatch: wrote the report to {report} (open it in a browser)\n"


def test_the_random_number_pool_holds_in_virtual_time_as_in_real_time(no_children_left):
    argv = ["-n", "2000000", "--region", "TV", "--sender", "0:0", "--no-progress"]
    virtual, real = _run([*argv, "--speed", "max"]), _run(argv)
    assert virtual[0] == real[0] == 2
    assert virtual[1] == real[1] == ""
    assert virtual[2] == real[2]
    assert "argument --messages: region TV has" in virtual[2]
