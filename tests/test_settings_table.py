"""One table of fields (core/settings.py) for Settings and SenderSpec: every
field has a row, and what is derived from the rows (the worker's wire format,
the summary's settings, the report's table, the --sender keys) carries every
field it should. A field added to a dataclass and not to its table fails here."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from pathlib import Path

import pytest
from test_layers import import_graph

from smsbatch import config
from smsbatch.broker import codec
from smsbatch.core.settings import (
    RUN_FIELDS,
    SENDER_FIELDS,
    AccountSpec,
    SenderSpec,
    Settings,
    sender_keys,
    summary_keys,
    worker_fields,
)
from smsbatch.core.summary import settings_dict
from smsbatch.present import report


def other_value(field: dataclasses.Field, default: object) -> object:
    """A value of the field's type that is not `default` (a required field's "default" is None)."""
    kind = str(field.type)
    if kind.startswith("tuple[SenderSpec"):
        return (SenderSpec(0.5, 0.25, name="other"),)
    if kind.startswith("tuple[AccountSpec"):
        return (AccountSpec("other", 12.5),)
    if kind.startswith("tuple[tuple[float, float]"):
        return ((30.0, 12.5),)
    if "bool" in kind:
        return not default
    if kind.startswith("int"):
        return (default or 0) + 7
    if kind.startswith("float"):
        return (default or 0.0) + 0.5
    if kind.startswith("str"):
        return (default or "") + "other"
    raise AssertionError(f"no other value for {field.name}: {kind}")


def all_other(cls: type) -> dict[str, object]:
    """A value for every field of `cls`, none of them its default."""
    return {
        f.name: other_value(f, None if f.default is dataclasses.MISSING else f.default) for f in dataclasses.fields(cls)
    }


def base_settings() -> Settings:
    return Settings(messages=10, senders=(SenderSpec(1.0, 0.0, name="a"),))


@pytest.mark.parametrize(("cls", "table"), [(Settings, RUN_FIELDS), (SenderSpec, SENDER_FIELDS)])
def test_every_field_has_one_row_and_every_row_a_field(cls, table):
    rows = [row.name for row in table]
    assert sorted(rows) == sorted(f.name for f in dataclasses.fields(cls))
    assert len(rows) == len(set(rows))
    assert all(row.help for row in table)


def test_the_run_settings_a_worker_needs_travel_and_come_back_as_they_were():
    settings = Settings(**all_other(Settings))
    theirs = codec.settings_for_worker(codec.run_info(settings), settings.senders)
    defaults = dataclasses.replace(base_settings(), senders=settings.senders)
    for field in dataclasses.fields(Settings):
        expected = settings if field.name in worker_fields() or field.name == "senders" else defaults
        assert getattr(theirs, field.name) == getattr(expected, field.name), field.name


def test_the_worker_gets_the_coordinators_retry_backoff():
    """The field a hand-written list once left out: a worker's senders backed off 1 s whatever was set."""
    settings = dataclasses.replace(base_settings(), retry_backoff=20.0, max_retries=1)
    assert codec.settings_for_worker(codec.run_info(settings), ()).retry_backoff == 20.0


WORKERS_OWN = {"senders", "broker_timeout"}  # `smsbatch worker` sets these itself
NEVER_THROUGH_REDIS = {"accounts", "trace"}  # bad input with --broker, so a worker's senders never have them


def sender_process_modules() -> set[str]:
    """What a sender in `smsbatch worker` runs: its loop and its side of Redis, and all they import."""
    graph, found = import_graph(), set()
    todo = ["smsbatch.realtime.sender", "smsbatch.broker.link"]
    while todo:
        module = todo.pop()
        if module not in found:
            found.add(module)
            todo += graph[module]
    return found


def settings_read(path: Path) -> set[str]:
    """The Settings fields `path` reads as `settings.<field>` or `<...>.settings.<field>`."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    read = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in fields:
            holder = node.value
            name = holder.id if isinstance(holder, ast.Name) else getattr(holder, "attr", None)
            if name == "settings":
                read.add(node.attr)
    return read


def test_every_setting_a_senders_code_reads_travels_to_a_worker():
    """A sender on a worker knows only what travels: a field its code reads and the
    table does not send would take its default there (as retry_backoff once did)."""
    root = Path(__file__).resolve().parent.parent
    modules = sender_process_modules()
    assert {"smsbatch.core.sender_model", "smsbatch.realtime.outbox"} <= modules
    paths = [root / (module.replace(".", "/") + ".py") for module in modules]
    read = set().union(*(settings_read(path) for path in paths if path.exists()))
    assert {"retry_backoff", "max_retries", "speed"} <= read  # the check sees what it is for
    assert read - WORKERS_OWN - NEVER_THROUGH_REDIS <= set(worker_fields())


def test_a_sender_spec_travels_whole():
    spec = SenderSpec(**all_other(SenderSpec))
    assert codec.spec_from_json(json.loads(json.dumps(codec.spec_to_json(spec)))) == spec


def summary_of(settings: Settings) -> dict:
    return json.loads(json.dumps(settings_dict(settings, settings.messages)))


def changed_keys(before: dict, after: dict) -> set[str]:
    return {key for key in before if before[key] != after[key]}


@pytest.mark.parametrize("row", [row for row in RUN_FIELDS if row.summary], ids=lambda row: row.name)
def test_a_run_field_in_the_summary_is_read_from_that_field(row):
    settings = base_settings()
    field = next(f for f in dataclasses.fields(Settings) if f.name == row.name)
    changed = dataclasses.replace(settings, **{row.name: other_value(field, getattr(settings, row.name))})
    keys = changed_keys(summary_of(settings), summary_of(changed))
    assert row.summary[0][0] in keys
    assert keys <= {key for key, _ in row.summary} | {"senders"}  # a sender without its own takes the run's


def test_virtual_time_is_summarised_as_max_and_its_mode():
    summary = summary_of(dataclasses.replace(base_settings(), speed=math.inf))
    assert (summary["speed"], summary["mode"]) == ("max", "virtual")


def sender_summary(spec: SenderSpec) -> dict:
    return summary_of(dataclasses.replace(base_settings(), senders=(spec,)))["senders"][0]


@pytest.mark.parametrize("row", SENDER_FIELDS, ids=lambda row: row.name)
def test_a_sender_field_in_the_summary_is_read_from_that_field(row):
    spec = SenderSpec(1.0, 0.0, name="a", distribution="normal", spread=0.1)
    field = next(f for f in dataclasses.fields(SenderSpec) if f.name == row.name)
    changed = dataclasses.replace(spec, **{row.name: other_value(field, getattr(spec, row.name))})
    before, after = (
        summary_of(dataclasses.replace(base_settings(), senders=(s,)))["senders"][0] for s in (spec, changed)
    )
    assert changed_keys(before, after) == {key for key, _ in row.summary}


def test_a_sender_without_its_own_distribution_is_summarised_with_the_runs():
    settings = dataclasses.replace(base_settings(), distribution="uniform", spread=0.3)
    sender = summary_of(settings)["senders"][0]
    assert (sender["distribution"], sender["spread"]) == ("uniform", 0.3)


def test_the_summary_keeps_its_keys_and_their_order():
    """The summary file is read by scripts and by older reports: the table's order is the file's."""
    assert list(summary_of(base_settings())) == [
        "messages", "distribution", "spread", "max_retries", "retry_backoff", "seed", "speed", "mode",
        "deadline_s", "deadline_share", "replications", "region", "recipients", "senders",
        "dlr_median_s", "dlr_p90_s", "undeliverable", "receipt_loss", "throttle_pause_s", "validity_s", "accounts",
    ]  # fmt: skip
    assert list(summary_of(base_settings())["senders"][0]) == [
        "name", "mean_s", "fail_rate", "window", "rate", "distribution", "spread", "dlr_median", "dlr_p90",
        "account", "cap", "burst", "down", "mtbf_s", "mttr_s", "backup",
    ]  # fmt: skip


def test_the_reports_settings_table_shows_summary_keys():
    summary = summary_of(base_settings())
    assert set(report.SETTING_KEYS) <= set(summary)
    assert list(summary["senders"][0]) == report.SENDER_SETTING_KEYS
    assert summary_keys(SENDER_FIELDS, per_sender=True) == (
        "name", "mean_s", "fail_rate", "window", "rate", "account", "cap", "backup",
    )  # fmt: skip


def test_every_sender_key_has_a_rule_on_the_command_line():
    assert tuple(config.SENDER_RULES) == sender_keys()
    assert sender_keys() == (
        "name", "window", "rate", "distribution", "spread", "dlr_median", "dlr_p90", "account",
        "cap", "burst", "down", "mtbf", "mttr", "backup",
    )  # fmt: skip
    for key in set(sender_keys()) - set(config.FLAGS):
        with pytest.raises(ValueError, match=f"^{key} "):
            config.parse_sender(f"1:0:{key}=\x07")
