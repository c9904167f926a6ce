"""The summary file's shape (`--summary-json`, read by `smsbatch report`):
a run's figures from its last Snapshot, and its settings from the table of
fields (core/settings.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from smsbatch.core.reach import REACH_PERCENTS
from smsbatch.core.result import RunResult
from smsbatch.core.settings import Settings, run_settings, sender_settings, speed_shown
from smsbatch.core.snapshot import ModelCheck, SenderView, Snapshot
from smsbatch.core.stats import Stats, bucket_value

SUMMARY_SCHEMA = "smsbatch-summary/1"

# A JSON object: plain values, lists and objects, read from a file or about
# to be written to one (`smsbatch report` reads summaries of older versions).
JsonObject = dict[str, Any]
Summary = JsonObject  # what --summary-json writes


def settings_dict(settings: Settings, messages: int) -> JsonObject:
    """The settings that decide a run's figures, as plain values (the summary's `settings`);
    `messages` is the run's count (with --recipients, the list's valid numbers)."""
    return run_settings(replace(settings, messages=messages))


def run_summary(result: RunResult, seed: int) -> Summary:
    """A finished run's figures, as the summary file holds them."""
    status = int(result.exit_status)
    return summary_dict(result.snapshot, seed, result.stopped_by, status, result.produced, result.startup)


def summary_dict(
    snap: Snapshot, seed: int, stopped_by: str, exit_status: int, produced: int | None, startup_s: float = 0.0
) -> Summary:
    s = snap.stats
    return {
        "messages": snap.messages,
        "sent": snap.sent,
        "failed": snap.failed,
        # Expired, both kinds (the receipts' identity: messages == delivered + ... + expired + failed +
        # unsent); those never accepted (messages == sent + failed + expired_not_accepted + unsent, as
        # the text adds them), and receipt_expired below: accepted, the receipt due after --validity.
        "expired": snap.expired + (snap.receipts.expired if snap.receipts is not None else 0),
        "expired_not_accepted": snap.expired,
        "unsent": snap.unsent,
        "produced": produced,
        "attempts": s.attempts,
        "failed_attempts": s.failed,
        "throttled": s.throttled,
        "interrupted": s.interrupted,
        "retried": snap.retried,
        "requeued": snap.requeued,
        "redelivered": snap.redelivered,
        "duplicates": snap.duplicates,
        "lost_senders": snap.lost_senders,
        **_receipt_fields(snap),
        **_times(s.snapshot()),
        "elapsed_s": snap.elapsed,
        "startup_s": startup_s,
        "sim_elapsed_s": snap.sim_elapsed,
        "reach_s": dict(snap.reach),
        "deadline_s": snap.deadline,
        "deadline_share": snap.deadline_share,
        "within_deadline": snap.within_deadline,
        "met_deadline": snap.met_deadline,
        "mode": snap.mode,
        "lag_s": snap.lag,
        "faithful": snap.faithful,
        "model_check": _model_dict(snap.model),
        "speed": speed_shown(snap.speed),
        "seed": seed,
        "stopped_by": stopped_by,
        "exit_status": exit_status,
        "senders": [
            {
                **sender_settings(v.spec, per_sender=True),
                "name": v.name,  # the name the run knows it by (the view's), whatever its spec holds
                "state": v.state,
                **v.stats.snapshot(),  # attempts, sent, failed (per attempt), times
                "rate_per_s": v.stats.rate,
                "busy_s": v.stats.time_sum,
                "capped_s": v.capped_s,
                "throttled": v.stats.throttled,
                "interrupted": v.stats.interrupted,
                "down_s": v.down_s,
                "outages_s": [list(outage) for outage in v.outages],
                "histogram": [[bucket_value(b), n] for b, n in sorted(v.stats.buckets.items())],
            }
            for v in snap.senders
        ],
        **({"timeline": snap.timeline} if snap.timeline is not None else {}),
    }


def _receipt_fields(snap: Snapshot) -> dict[str, object]:
    """What became of the accepted (sent) messages: sent == delivered +
    undeliverable + no_receipt + receipt_pending + receipt_expired (a receipt
    due after --validity reads expired). With no receipts modelled, every
    accepted message is delivered at once."""
    receipts = snap.receipts
    if receipts is None:
        nothing = ("undeliverable", "no_receipt", "receipt_pending", "receipt_expired")
        counts = {"delivered": snap.sent, **dict.fromkeys(nothing, 0)}
    else:
        counts = {
            "delivered": receipts.delivered,
            "undeliverable": receipts.undeliverable,
            "no_receipt": receipts.no_receipt,
            "receipt_pending": receipts.pending,
            "receipt_expired": receipts.expired,
        }
    return {**counts, "receipts_modelled": receipts is not None, "delivered_reach_s": dict(snap.delivered_reach)}


def _model_dict(model: ModelCheck | None) -> dict[str, object] | None:
    if model is None:
        return None
    return {
        "sim_elapsed_s": model.sim_elapsed,
        "reach_s": dict(model.reach),
        "sent": model.sent,
        "failed": model.failed,
        "off": list(model.off),
    }


def _times(snapshot: Mapping[str, float]) -> dict[str, float]:
    """The send-time figures of a Stats snapshot (its counts are per attempt)."""
    return {key: value for key, value in snapshot.items() if key.endswith("_s")}


def unstarted_summary(settings: Settings, messages: int, stopped_by: str, exit_status: int) -> Summary:
    """The summary of a run that never started (stopped first): every message
    unsent, each sender listed with nothing done, every key of a summary there."""
    senders = tuple(SenderView(spec.name, spec, Stats(), "not started") for spec in settings.senders)
    snapshot = Snapshot(
        messages=messages, sent=0, failed=0, retried=0, elapsed=0.0, speed=settings.speed, stats=Stats(),
        senders=senders, mode="virtual" if settings.virtual else "real-time", deadline=settings.deadline,
        deadline_share=settings.deadline_share, reach={str(p): None for p in REACH_PERCENTS},
    )  # fmt: skip
    return summary_dict(snapshot, settings.seed, stopped_by, exit_status, 0)
