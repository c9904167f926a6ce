"""How many messages travel together: the producer's batch size, and how much
of a batch a sender elsewhere keeps (the rest goes back for the others); and
the two sender timings they follow: how often a busy sender wakes, and how
far ahead of its free slots it keeps work.

Used by the runner, the CLI and the Redis worker, so it lives apart from all
three: a worker must not reach into the runner to size its share.
"""

from __future__ import annotations

import math

from smsbatch.core.settings import SenderSpec, Settings
from smsbatch.core.text import sms_segments

MAX_BATCH = 1000
UNKNOWN_SENDERS_BATCH = 100
BATCH_REAL_SECONDS = 0.1  # a remote sender keeps about this much of its own work from a batch


def real_seconds_per_message(spec: SenderSpec, speed: float, segments: int = 1) -> float:
    """How long a sender takes per message of `segments` segments, in real seconds, when busy."""
    per_send = spec.mean * segments / spec.window
    if spec.rate:
        per_send = max(per_send, segments / spec.rate)
    return per_send / speed


def share_for(spec: SenderSpec, speed: float, segments: int = 1) -> int:
    """Messages a sender should hold at once: BATCH_REAL_SECONDS of work, and
    enough to fill its window."""
    per_message = real_seconds_per_message(spec, speed, segments)
    by_time = MAX_BATCH if per_message == 0 else int(BATCH_REAL_SECONDS / per_message)
    return max(1, spec.window, min(MAX_BATCH, by_time))


def choose_batch_size(settings: Settings, messages: int) -> int:
    """What the fastest sender starts in a few wake-ups (fewer trips to the
    queue), and every sender gets several batches. A slower sender keeps only
    what it will start before its next wake-up and gives the rest back."""
    if not settings.senders:  # only workers elsewhere, of unknown speed: modest batches
        return max(1, min(UNKNOWN_SENDERS_BATCH, math.ceil(messages / 16)))
    segments = sms_segments(settings.text).count
    fastest = min(real_seconds_per_message(spec, settings.speed, segments) for spec in settings.senders)
    by_time = MAX_BATCH if fastest == 0 else int(ahead_seconds(len(settings.senders)) / fastest)  # it keeps all
    by_share = math.ceil(messages / (4 * len(settings.senders)))
    return max(1, min(MAX_BATCH, by_time, by_share))


def ahead_seconds(senders: int) -> float:
    """Real seconds of work a busy sender keeps beyond its free slots: two
    wake-ups, and more with many senders (0.4 ms each), so that hundreds of
    them do not flood the runner with a report per few messages taken."""
    return max(2 * wake_seconds(senders), 0.0004 * senders)


def wake_seconds(senders: int) -> float:
    """How often, at most, a busy sender wakes (real seconds). Sends still end
    at their exact due times; a late wake-up finishes every send due by then,
    each followed by the next. Short for a few senders (little lateness),
    longer for hundreds (waking each for every send would take the machine)."""
    return min(0.02, max(0.002, 0.0005 * senders))
