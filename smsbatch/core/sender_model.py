"""A sender's behaviour, in one place: its slots, its caps, what each
attempt takes and how it ends, and when a failed one comes back.

The rules:

- SlotBoard: which free slot starts the next message, and when: the one that
  can start it soonest, the lowest slot at a tie, or where caps or a gate
  pace the starts, the slot that went free first (a slot waiting for a cap
  holds nothing);
- Pacer: a rate cap, starts at least k/rate apart (k segments a message);
  Caps: a sender's own Pacer and its account's, shared by the account's
  senders;
- SenderModel: an attempt's draws (block) and how it ends (outcome: sent,
  retry, failed for good); retry_delay(): when a retry re-enters the queue.

The real-time sender (realtime/sender.py) keeps sleeping, intake and
reporting, and asks the SlotBoard, the Caps and the SenderModel for every
start and end. The virtual engine (virtual/engine.py) keeps the event heap,
the queue and the tie order, and asks the Caps and the SenderModel; its
choice of slot is the SlotBoard's rule run as events (a free slot's START
event, keyed by slot, so the lowest goes first; a capped sender's free slots
in a heap by when they went free; a slot that finishes goes on at once when
nothing else happens then), the fast path of --speed max. The
trace tests (tests/test_trace.py) hold the two to each other and to a slow,
obvious event loop, row for row. Each sender has its own generators,
seeded from (run seed, sender index), one stream each for send times,
outcomes and retry jitter, so an attempt has the same send time and outcome
in every mode, however the attempts interleave.

Draws are laid out per lane: a lane is one slot of a sender with several
slots and no cap (each slot its own streams of send times and outcomes), or
the whole sender (a sender with one slot, a capped or gated one, or one that
never waits: its streams as they always were). The r-th attempt a lane starts
takes row r of the lane's streams. So while the queue holds work, a slot's
ends are a cumulative sum of its own draws, whatever the other slots do: what
lets virtual time compute them a chunk at a time (virtual/fast.py), and the
same in every mode (the real-time sender draws from the same lanes).

Draws come in blocks (numpy): a block of send times and a block of outcomes
per BLOCK attempts. numpy's streams do not depend on the block size (drawing
5 then 7 values gives the same 12 as drawing 12), so the block size is an
implementation detail, never part of the answer.

Retry timing belongs to the model too: a failed attempt k (1-based) with
retries left re-enters the queue at fail time + backoff * 2**(k-1) * U(0.5, 1.5).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from smsbatch.core.distributions import DISTRIBUTIONS
from smsbatch.core.model import FAILED, RETRY, SENT
from smsbatch.core.receipts import DELIVERED, NO_RECEIPT, UNDELIVERABLE
from smsbatch.core.settings import SenderSpec, Settings
from smsbatch.core.text import sms_segments

if TYPE_CHECKING:
    import numpy as np

BLOCK = 4096  # attempts drawn at a time
Z90 = 1.2815515655446004  # the standard normal's 90th percentile: a lognormal's p90 = median * exp(sigma * Z90)


def needs_numpy(settings: Settings) -> bool:
    """Will any sender of the run draw anything? A sender that never waits and
    whose sends all succeed (or all fail, with no retries) has nothing to draw:
    such a run does not even import numpy (a tenth of a second of start-up)."""
    return any(not _nothing_to_draw(spec, settings) for spec in settings.senders)


def _nothing_to_draw(spec: SenderSpec, settings: Settings) -> bool:
    return (
        spec.mean == 0.0
        and not spec.rate
        and not spec.account
        and not spec.gateway
        and (spec.fail_rate == 0.0 or (spec.fail_rate == 1.0 and settings.max_retries == 0))
    )


def generators(seed: int, index: int | str) -> tuple[np.random.Generator, ...]:
    """A sender's independent streams: send times, outcomes, retry jitter,
    receipt delays, receipt kinds, outages (children of one SeedSequence: the
    first three are what they were before receipts were modelled; spawning
    more never changes the first ones).
    `index` is the sender's place in the run, or the name of a sender that
    joined from elsewhere (through Redis)."""
    import numpy as np  # here: a run with nothing to draw never loads it

    root = np.random.SeedSequence(_entropy(seed, index))
    return tuple(np.random.Generator(np.random.PCG64(child)) for child in root.spawn(6))


def _entropy(seed: int, index: int | str) -> list[int]:
    if isinstance(index, str):
        index = int.from_bytes(hashlib.sha256(index.encode()).digest()[:8], "big")
    return [seed & 0xFFFFFFFFFFFFFFFF, index]


def lane_generators(seed: int, index: int | str, lane: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Lane `lane`'s streams of send times and outcomes, for a sender of several
    lanes: the children `lane` of the sender's own two (generators()[0] and [1]),
    made alone (SeedSequence's spawn keys), so a lane never used is never made."""
    import numpy as np

    entropy = _entropy(seed, index)
    return (
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(0, lane)))),
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(1, lane)))),
    )


class SendTimes:
    """Draws simulated send times of one distribution, honouring the mean exactly."""

    def __init__(self, name: str, mean: float, spread: float, rng: np.random.Generator) -> None:
        self.name = "constant" if mean == 0.0 else name
        self.mean = mean
        self.spread = spread
        self.rng = rng
        self.kept: np.ndarray | None = None  # accepted draws not yet handed out (normal only)

    def take(self, count: int) -> np.ndarray:
        import numpy as np

        name, mean, spread, rng = self.name, self.mean, self.spread, self.rng
        if name == "constant":
            return np.full(count, mean)
        if name == "exponential":
            return rng.exponential(mean, count)
        if name == "uniform":
            half_width = math.sqrt(3.0) * spread * mean
            return rng.uniform(mean - half_width, mean + half_width, count)
        if name == "lognormal":
            sigma = math.sqrt(math.log1p(spread * spread))
            mu = math.log(mean) - sigma * sigma / 2.0  # E[X] = exp(mu + sigma^2/2) = mean
            return rng.lognormal(mu, sigma, count)
        if name == "normal":
            return self._symmetric_normal(count)
        raise ValueError(f"unknown distribution {name!r}")

    def _symmetric_normal(self, count: int) -> np.ndarray:
        # Redraw outside [0, 2*mean]: cut on both sides alike, the mean stays put.
        # Accepted draws are kept in stream order, so blocks do not change the sequence.
        import numpy as np

        if self.kept is None:
            self.kept = np.empty(0)
        while len(self.kept) < count:
            draws = self.rng.normal(self.mean, self.spread * self.mean, count)
            self.kept = np.concatenate([self.kept, draws[(draws >= 0.0) & (draws <= 2.0 * self.mean)]])
        taken, self.kept = self.kept[:count], self.kept[count:]
        return taken


# (send times, outcome generator, jitter generator)
_Streams = tuple[SendTimes, "np.random.Generator", "np.random.Generator"]


class Pacer:
    """The rate cap: a sender's starts are at least `gap` simulated seconds
    apart (gap 0.0: no cap). `next_start` is the earliest start of the next one."""

    __slots__ = ("gap", "next_start")

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.next_start = 0.0

    def opens_at(self, ready: float) -> float:
        """The earliest start of a send ready at `ready`."""
        return ready if ready >= self.next_start else self.next_start

    def start(self, ready: float) -> float:
        """A send ready at `ready` starts when the cap lets it; the next one gap later."""
        if not self.gap:
            return ready
        start = ready if ready >= self.next_start else self.next_start
        self.next_start = start + self.gap
        return start


class Outages:
    """A sender's outages, [start, end) in simulated time: its down= periods and,
    with mtbf/mttr, random ones (up and down times exponential with those means,
    from its own stream, drawn as far as asked), merged where they overlap or touch."""

    def __init__(self, fixed: tuple[tuple[float, float], ...], mtbf: float, mttr: float, seed: int, index: int | str):
        self.intervals: list[tuple[float, float]] = []
        # (low, high, outage): first_after(t) for every t in [low, high), as last found
        self._answer: tuple[float, float, tuple[float, float] | None] = (0.0, 0.0, None)
        self.random = bool(mtbf)
        self.mtbf, self.mttr = mtbf, mttr
        self.seed, self.index = seed, index
        self._rng: np.random.Generator | None = None
        self.next_random = (math.inf, math.inf)  # the next random outage, not yet merged
        for start, duration in fixed:
            self._merge((start, start + duration))
        if self.random:
            self._rng = generators(seed, index)[5]
            self._draw_next(0.0)

    def _draw_next(self, after: float) -> None:
        assert self._rng is not None
        start = after + float(self._rng.exponential(self.mtbf))
        self.next_random = (start, start + float(self._rng.exponential(self.mttr)))

    def _merge(self, outage: tuple[float, float]) -> None:
        start, end = outage
        kept = []
        for s, e in self.intervals:
            if e < start or s > end:
                kept.append((s, e))
            else:
                start, end = min(start, s), max(end, e)
        kept.append((start, end))
        self.intervals = sorted(kept)
        self._answer = (0.0, 0.0, None)

    def first_after(self, t: float) -> tuple[float, float] | None:
        """The first outage that ends after t, whole (every random one that could join it drawn)."""
        if t == math.inf:  # none ends after it (and random ones would be drawn for ever)
            return None
        low, high, answer = self._answer
        if low <= t < high:  # the same answer as last time: every call between two outages
            return answer
        while True:
            i = next((i for i, (_, e) in enumerate(self.intervals) if e > t), len(self.intervals))
            found = self.intervals[i] if i < len(self.intervals) else None
            known_until = self.next_random[0]  # no random outage starts before it is drawn
            if known_until == math.inf or (found is not None and known_until > found[1]):
                low = self.intervals[i - 1][1] if i else -math.inf
                self._answer = (low, found[1] if found is not None else math.inf, found)
                return found
            self._merge(self.next_random)
            self._draw_next(self.next_random[1])

    def up_from(self, t: float) -> float:
        """The earliest time from t on when it is up."""
        outage = self.first_after(t)
        return outage[1] if outage is not None and outage[0] <= t else t

    def down_from(self, t: float) -> float:
        """The earliest time from t on when it is down (inf: never)."""
        outage = self.first_after(t)
        return math.inf if outage is None else max(t, outage[0])

    def down_seconds(self, until: float) -> float:
        """Simulated seconds it was down from 0 to `until`."""
        self.first_after(until)
        return sum(max(0.0, min(e, until) - s) for s, e in self.intervals if s < until)

    def within(self, until: float) -> list[tuple[float, float]]:
        """Its outages that start by `until`."""
        self.first_after(until)
        return [(s, e) for s, e in self.intervals if s <= until]


class Gate:
    """When a sender may start work at all: while it is up, not paused (after a
    throttled answer it takes no new work for --throttle-pause), and, for a
    backup, only while every sender that is not a backup is down."""

    __slots__ = ("outages", "paused_until", "primaries")

    def __init__(self, outages: Outages | None, primaries: list[Outages] | None) -> None:
        self.outages = outages
        self.primaries = primaries  # None: not a backup
        self.paused_until = 0.0

    def opens_at(self, t: float) -> float:
        while True:
            at = t if t >= self.paused_until else self.paused_until
            if self.outages is not None:
                at = self.outages.up_from(at)
            if self.primaries is not None:
                at = _all_down_from(self.primaries, at)
            if at == t or at == math.inf:
                return at
            t = at


def _all_down_from(outages: list[Outages], t: float) -> float:
    """The earliest time from t on when every one of them is down."""
    while t < math.inf:
        moved = False
        for sender in outages:
            down = sender.down_from(t)
            if down > t:
                t, moved = down, True
        if not moved:
            return t
    return t


class TokenBucket:
    """A gateway's own limit: `size` tokens (segments), refilled at `rate` a
    second, full at time 0. A start that finds fewer than k tokens is answered
    throttled and takes none. Starts come in time order."""

    __slots__ = ("at", "rate", "size", "tokens")

    def __init__(self, rate: float, size: float) -> None:
        self.rate, self.size = rate, size
        self.tokens, self.at = size, 0.0

    def admit(self, t: float, k: int) -> bool:
        tokens = self.tokens + (t - self.at) * self.rate
        self.tokens = tokens if tokens < self.size else self.size
        self.at = t
        # A hair of slack: starts exactly k/rate apart refill exactly k, whatever the rounding of their times.
        if self.tokens + 1e-9 * k >= k:
            self.tokens -= k
            return True
        return False


class Caps:
    """A sender's starts under both its caps: its own rate (Pacer) and its
    account's, a Pacer shared by every sender of the account, and its Gate
    (outages, throttling pauses, failover). A start waits for all of them;
    `gap` is nonzero when a rate caps it."""

    __slots__ = ("account", "gap", "gate", "own")

    def __init__(self, own: Pacer, account: Pacer | None, gate: Gate | None = None) -> None:
        self.own = own
        self.account = account
        self.gate = gate
        self.gap = max(own.gap, account.gap) if account is not None else own.gap

    @property
    def next_start(self) -> float:
        account = self.account
        return self.own.next_start if account is None else max(self.own.next_start, account.next_start)

    def opens_at(self, ready: float) -> float:
        if self.account is not None:
            ready = self.account.opens_at(ready)
        ready = self.own.opens_at(ready)
        return ready if self.gate is None else self.gate.opens_at(ready)

    def start(self, ready: float) -> float:
        start = self.opens_at(ready)
        self.own.start(start)
        if self.account is not None:
            self.account.start(start)
        return start

    def starts_by(self, horizon: float, free: int, now: float = 0.0) -> int:
        """How many of `free` slots can start by `horizon` (simulated), asked at `now`."""
        if not self.gap and self.gate is None:
            return free
        next_start = self.opens_at(max(self.next_start, now)) if self.gate is not None else self.next_start
        if not self.gap:
            return free if next_start <= horizon else 0
        if next_start > horizon:
            return 0
        return min(free, 1 + int((horizon - next_start) / self.gap))


class SlotBoard:
    """A sender's free slots, and the model's rule for which one starts the
    next message in the queue: the slot that can start it soonest (free, the
    message there, the rate cap open); at a tie, the lowest slot, or for a
    sender whose starts wait for its caps (a rate, a gateway's gate), the
    slot that went free first (its free slots wait for the cap in turn: the
    lowest slot at a tie). A message that arrives
    after several slots of an uncapped sender went free finds them all free,
    so the lowest of those takes it, whichever went free first.

    Two heaps keep each start at log(window): `ready`, the slots free by the
    time `by` (lowest slot first, or soonest first under a cap), and `later`,
    the slots that go free after it (soonest first). Starts come in time order (the queue is FIFO, and its
    messages enter it in time order), so `by` only grows, and each slot moves
    from `later` to `ready` once per time it goes free."""

    def __init__(self, window: int, pacer: Caps) -> None:
        # (slot, free since), or (free since, slot) for a sender a rate caps: in the order it takes them
        # A sender whose starts wait for its caps (a rate, a gateway's gate): its slots in the order they went free.
        self.in_turn = bool(pacer.gap) or pacer.gate is not None
        self.ready: list[tuple[Any, Any]] = [(0.0, slot) if self.in_turn else (slot, 0.0) for slot in range(window)]
        self.later: list[tuple[float, int]] = []  # (free since, slot)
        self.by = 0.0
        self.pacer = pacer

    def __len__(self) -> int:
        return len(self.ready) + len(self.later)

    def first_free(self) -> float:
        """When its first free slot went free (call only when it has one)."""
        since = min(entry[0 if self.in_turn else 1] for entry in self.ready) if self.ready else math.inf
        return min(since, self.later[0][0]) if self.later else since

    def earliest(self, available: float) -> float:
        """When a message that entered the queue at `available` would start here."""
        at = self.pacer.opens_at(available)
        if at < self.by:  # asked about an earlier time than it has started at: look at every slot
            since = self.first_free()
            return self.pacer.opens_at(since if since > available else available)
        if self.ready or self.later[0][0] <= at:
            return at
        return self.later[0][0]  # after `at`, so after the cap opens too

    def take(self, available: float) -> tuple[int, float, float]:
        """The slot that starts a message that entered the queue at `available`:
        (slot, start, ready), ready being when it would start were there no cap."""
        self._free_by(self.pacer.opens_at(available))
        if self.ready:  # every slot free by then starts it then: the lowest one does (under a cap, the first free)
            slot, since = heapq.heappop(self.ready)
            if self.in_turn:
                slot, since = since, slot
        else:  # none is: the first to be free
            since, slot = heapq.heappop(self.later)
        ready = since if since > available else available
        return slot, self.pacer.start(ready), ready

    def release(self, slot: int, since: float) -> None:
        if since <= self.by:
            heapq.heappush(self.ready, (since, slot) if self.in_turn else (slot, since))
        else:
            heapq.heappush(self.later, (since, slot))

    def _free_by(self, at: float) -> None:
        """Every slot free by `at` into `ready`."""
        if at < self.by:  # an earlier time than before (not in a FIFO queue's order): start afresh
            for entry in self.ready:
                heapq.heappush(self.later, entry if self.in_turn else (entry[1], entry[0]))
            self.ready = []
        self.by = at
        later, ready = self.later, self.ready
        while later and later[0][0] <= at:
            since, slot = heapq.heappop(later)
            heapq.heappush(ready, (since, slot) if self.in_turn else (slot, since))


# The fast path of virtual time (virtual/fast.py) computes a run a chunk at a
# time while the queue holds first attempts, and hands over to the event loop
# for the rest. It is exact for what it was written for, and for nothing else:
# a rule for every field of SenderSpec and of Settings it knows, and a field
# it does not know (a behaviour added later) turns it off, until someone
# writes its rule here and its case in tests/test_fast.py.
_ANY = None
FAST_SENDER_FIELDS: dict[str, Callable[[Any], bool] | None] = {
    "mean": lambda v: v > 0.0,  # a sender that never waits starts everything at time 0: the loop's ties
    "fail_rate": _ANY,
    "name": _ANY,
    "distribution": lambda v: v is None or v in DISTRIBUTIONS,
    "spread": _ANY,
    "window": _ANY,
    "rate": _ANY,  # its own cap: starts 1/rate apart (a lane of its own)
    "account": _ANY,  # a cap shared by several senders (see fast_path for the run)
    "dlr_median": _ANY,  # receipts: drawn a chunk at a time, in each sender's order of acceptance
    "dlr_p90": _ANY,
    "cap": lambda v: not v,  # a gateway's token bucket and throttled answers: the loop
    "burst": lambda v: not v,
    "down": _ANY,  # outages and failover: moments the loop handles (see fast_path for the run)
    "mtbf": _ANY,
    "mttr": _ANY,
    "backup": _ANY,
}
FAST_RUN_FIELDS: dict[str, Callable[[Any], bool] | None] = {
    **dict.fromkeys(
        (
            "messages",
            "senders",
            "messages_given",
            "text",
            "region",
            "recipients",
            "interval",
            "speed",
            "seed",
            "seed_given",
            "summary_json",
            "progress",
            "log_level",
            "max_retries",
            "retry_backoff",
            "retry_backoff_given",
            "broker",
            "broker_timeout",
            "claim_after",
            "local_senders",
            "replications",
            "jobs",
            "deadline",
            "deadline_share",
            "require_deadline",
            "report",
            "timeline",
            "accounts",
            "throttle_pause",  # a pause after a throttled answer: there are none without cap=
            "precision",  # how many replications (--replications auto), not what one of them does
            "max_replications",
            "cluster",  # where replications run, not what one of them does
        ),
        _ANY,
    ),
    "distribution": lambda v: v in DISTRIBUTIONS,
    "spread": _ANY,
    "dlr_median": _ANY,
    "dlr_p90": _ANY,
    "undeliverable": _ANY,
    "receipt_loss": _ANY,
    "validity": _ANY,  # expiry: a moment the loop handles, and all after it
    "trace": lambda v: v is None,  # a row per attempt: the loop
}


def _known(obj: object, rules: dict[str, Callable[[Any], bool] | None]) -> bool:
    names = [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]
    return all(
        name in rules and (rules[name] is None or rules[name](getattr(obj, name)))  # type: ignore[misc]
        for name in names
    )


def vectorisable(spec: SenderSpec, settings: Settings) -> bool:
    """Can the fast path of virtual time compute this sender's part of the run
    exactly, while the queue holds first attempts? Only for the fields it knows."""
    return _known(spec, FAST_SENDER_FIELDS) and _known(settings, FAST_RUN_FIELDS)


def fast_path(models: Sequence[SenderModel], trace: bool) -> bool:
    """The run's choice: vectorise while the queue holds first attempts
    (virtual/fast.py), else the event loop alone. The senders of an account
    take its ticks in turn (the lowest with a free slot) only while none of
    their own caps binds: each own rate at least the account's, or the loop.
    A sender with outages or a backup's gate is computed between its moments
    when a cap paces it and it shares no account (the gate opens and closes
    one sender's ticks), else the loop."""
    if not models or trace or not all(model.vectorisable for model in models):
        return False
    by_account: dict[str, list[SenderModel]] = {}
    for model in models:
        if model.spec.account:
            by_account.setdefault(model.spec.account, []).append(model)
    shared = {name for name, members in by_account.items() if len(members) > 1}
    if any(model.gateway and (not model.capped or model.spec.account in shared) for model in models):
        return False
    return all(
        len(members) == 1 or all(m.start_gap <= m.account_gap for m in members) for members in by_account.values()
    )


class SenderModel:
    """One sender: its slots, its rate cap, and the draws of every attempt."""

    def __init__(self, spec: SenderSpec, settings: Settings, index: int | str) -> None:
        self.spec = spec
        self.window = spec.window
        # Every message is the run's text: k segments, sent one after another in its slot.
        self.segments = sms_segments(settings.text).count
        # A cap counts segments: a message's start takes k of its `rate` segments a second.
        self.start_gap = self.segments / spec.rate if spec.rate else 0.0  # simulated seconds between starts
        account = next((a for a in settings.accounts if a.name == spec.account), None) if spec.account else None
        self.account_gap = self.segments / account.rate if account else 0.0  # the same, for its account's cap
        self.capped = bool(self.start_gap or self.account_gap)
        self.mean_send = spec.mean * self.segments  # simulated seconds a message takes, on average
        self.fail_rate = spec.fail_rate
        self.max_retries = settings.max_retries
        self.retry_backoff = settings.retry_backoff
        self.distribution, self.spread = settings.distribution_of(spec)
        # A message's send time's standard deviation over its mean, at most (the normal is cut to [0, 2 * mean]).
        cv = {"exponential": 1.0, "constant": 0.0}.get(self.distribution, self.spread) if spec.mean else 0.0
        self.send_cv = cv / math.sqrt(self.segments)  # (a sum of k independent segments)
        self.seed, self.index = settings.seed, index
        self.instant = spec.mean == 0.0 and not self.capped and not spec.gateway  # a whole batch goes in no time
        self.nothing_to_draw = _nothing_to_draw(spec, settings)
        self.jitters: list[float] = []
        self._streams: _Streams | None = None  # made at the first draw
        # Delivery receipts (none modelled: every accepted message delivered at once).
        self.receipts = settings.receipts
        self.dlr_median, self.dlr_p90 = settings.receipt_delay(spec)
        self.undeliverable, self.receipt_loss = settings.undeliverable, settings.receipt_loss
        self._receipt_streams: tuple[np.random.Generator, ...] | None = None
        # A real gateway (none of it set: the plain model above, to the bit).
        self.gateway = spec.gateway
        self.gated = self.capped or self.gateway  # its starts wait for its Caps (rates, and its Gate)
        self.cap, self.bucket_size = spec.cap, spec.bucket_size
        self.throttle_pause = settings.throttle_pause
        self.validity = math.inf if settings.validity is None else settings.validity
        self.backup = spec.backup
        # Its lanes (see the module's docstring): a slot each, or the whole sender.
        # A gateway's behaviours (outages, cap=, a backup) keep a slot's lane: an
        # outage that never comes changes no draw, so `compare --with` pairs alike.
        self.lanes = self.window if self.window > 1 and not self.capped and spec.mean > 0.0 else 1
        self._lane_streams: dict[int, tuple[SendTimes, np.random.Generator]] = {}
        # Can virtual time compute its runs a chunk at a time (virtual/fast.py)?
        self.vectorisable = vectorisable(spec, settings)

    def lane_of(self, slot: int) -> int:
        """The lane whose draws slot `slot` (of this sender) takes."""
        return slot if self.lanes > 1 else 0

    @property
    def streams(self) -> _Streams:
        """(send times, outcome generator, jitter generator)."""
        if self._streams is None:
            time_rng, outcome_rng, jitter_rng = generators(self.seed, self.index)[:3]
            send_times = SendTimes(self.distribution, self.spec.mean, self.spread, time_rng)
            self._streams = (send_times, outcome_rng, jitter_rng)
        return self._streams

    def _lane(self, lane: int) -> tuple[SendTimes, np.random.Generator]:
        if self.lanes == 1:
            send_times, outcome_rng, _ = self.streams
            return send_times, outcome_rng
        if lane not in self._lane_streams:
            time_rng, outcome_rng = lane_generators(self.seed, self.index, lane)
            send_times = SendTimes(self.distribution, self.spec.mean, self.spread, time_rng)
            self._lane_streams[lane] = (send_times, outcome_rng)
        return self._lane_streams[lane]

    def block(self, count: int = BLOCK, lane: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The next `count` attempts of lane `lane`: (send times, failed?) as
        arrays. An attempt of k segments takes k draws of each stream, in order:
        its send time is their sum (added one after another, as the segments
        go), and it fails when any segment fails (probability 1 - (1 - fail_rate)^k)."""

        send_times, outcome_rng = self._lane(lane)
        k = self.segments
        if k == 1:
            return send_times.take(count), outcome_rng.random(count) < self.fail_rate
        parts = send_times.take(count * k).reshape(count, k)
        times = parts[:, 0].copy()
        for segment in range(1, k):
            times += parts[:, segment]
        fails = (outcome_rng.random(count * k) < self.fail_rate).reshape(count, k)
        failed = fails[:, 0].copy()
        for segment in range(1, k):  # (column by column: any(axis=1) over so short a row is ten times slower)
            failed |= fails[:, segment]
        return times, failed

    def receipt_block(self, count: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
        """The receipts of the next `count` messages it has accepted: (delays, kinds).
        A delay is lognormal with the sender's median and 90th percentile (the
        same two: that constant); a kind is UNDELIVERABLE, NO_RECEIPT or DELIVERED
        with the run's shares. Each from a stream of its own."""
        import numpy as np

        if self._receipt_streams is None:
            self._receipt_streams = generators(self.seed, self.index)[3:5]
        delay_rng, kind_rng = self._receipt_streams
        median, p90 = self.dlr_median, self.dlr_p90
        if p90 == median:
            delays = np.full(count, median)
        else:
            delays = delay_rng.lognormal(math.log(median), math.log(p90 / median) / Z90, count)
        u = kind_rng.random(count)
        kinds = np.where(u < self.undeliverable, UNDELIVERABLE, DELIVERED)
        kinds[(u >= self.undeliverable) & (u < self.undeliverable + self.receipt_loss)] = NO_RECEIPT
        return delays, kinds

    def retry_delay(self, attempt: int) -> float:
        """Simulated seconds from the failure of `attempt` to its retry entering the queue."""
        if not self.jitters:
            self.jitters = self.streams[2].uniform(0.5, 1.5, 256).tolist()[::-1]
        return self.retry_backoff * 2.0 ** (attempt - 1) * self.jitters.pop()

    def retry_delays(self, attempts: np.ndarray) -> np.ndarray:
        """retry_delay() for failures in a row (`attempts`: theirs), as an array:
        the same jitters, the same arithmetic."""
        import numpy as np

        count = len(attempts)
        jitters: list[float] = []
        while len(jitters) < count:
            if not self.jitters:
                self.jitters = self.streams[2].uniform(0.5, 1.5, 256).tolist()[::-1]
            take = min(count - len(jitters), len(self.jitters))
            jitters += self.jitters[: -take - 1 : -1]
            del self.jitters[-take:]
        delays: np.ndarray = self.retry_backoff * 2.0 ** (attempts - 1) * np.array(jitters)
        return delays

    def caps(self, accounts: dict[str, Pacer], outages: RunOutages | None = None) -> Caps:
        """Its caps for one run: its own, fresh, its account's from `accounts`
        (the run's shared account caps, account_caps()), and its gate, from the
        run's outages (RunOutages: every sender's, which a backup looks at)."""
        gate = None
        if self.gateway:
            mine = outages.of(self.index, self.spec) if outages is not None else None
            primaries = outages.primaries() if outages is not None and self.backup else None
            gate = Gate(mine, primaries)
        return Caps(Pacer(self.start_gap), accounts.get(self.spec.account) if self.spec.account else None, gate)

    def board(self, accounts: dict[str, Pacer], outages: RunOutages | None = None) -> SlotBoard:
        """Its slots for one run, all free at time 0."""
        return SlotBoard(self.window, self.caps(accounts, outages))

    def bucket(self) -> TokenBucket | None:
        """Its gateway's token bucket for one run (None: no cap=)."""
        return TokenBucket(self.cap, self.bucket_size) if self.cap else None

    def retries_left(self, attempt: int) -> bool:
        return attempt <= self.max_retries

    def outcome(self, attempt: int, failed: bool) -> int:
        """How `attempt` ends: sent, failed for good, or to be retried."""
        if not failed:
            return SENT
        return RETRY if self.retries_left(attempt) else FAILED


class RunOutages:
    """Every sender's outages in one run, by its index: the same for every
    process of the run (each sender's come from its own stream)."""

    def __init__(self, settings: Settings) -> None:
        self.senders = settings.senders
        self.seed = settings.seed
        self.made: dict[int | str, Outages] = {}

    def of(self, index: int | str, spec: SenderSpec | None = None) -> Outages | None:
        """Sender `index`'s outages (`spec`: its own, for a sender from elsewhere); None: never down."""
        spec = spec or (self.senders[index] if isinstance(index, int) else None)
        if spec is None or not (spec.down or spec.mtbf):
            return None
        if index not in self.made:
            self.made[index] = Outages(spec.down, spec.mtbf, spec.mttr, self.seed, index)
        return self.made[index]

    def until(self, index: int | str, until: float, spec: SenderSpec | None = None) -> tuple[tuple[float, float], ...]:
        """Sender `index`'s outages from 0 to `until`, cut there: what its summary shows."""
        outages = self.of(index, spec)
        if outages is None:
            return ()
        return tuple((start, min(end, until)) for start, end in outages.within(until) if start < until)

    def primaries(self) -> list[Outages]:
        """The outages of every sender that is not a backup (one never down: an outage that never starts)."""
        found = [self.of(i) for i, spec in enumerate(self.senders) if not spec.backup]
        return [o if o is not None else _NEVER_DOWN for o in found]


_NEVER_DOWN = Outages((), 0.0, 0.0, 0, 0)


def account_caps(settings: Settings) -> dict[str, Pacer]:
    """The run's shared account caps, fresh: a message's start takes k of an account's `rate` segments."""
    segments = sms_segments(settings.text).count
    return {account.name: Pacer(segments / account.rate) for account in settings.accounts}


class ReceiptDraws:
    """A sender's receipts in its order of acceptance: one at a time (take), for
    code that accepts messages one by one, or many (take_many); the same draws."""

    def __init__(self, model: SenderModel) -> None:
        self.model = model
        self.block: tuple[np.ndarray, np.ndarray] | None = None  # the current block of (delays, kinds)
        self.delays: list[float] = []  # ... as lists, for take()
        self.kinds: list[int] = []
        self.used = 0  # receipts of it taken

    def _next_block(self) -> None:
        self.block = self.model.receipt_block()
        self.delays, self.kinds = [], []
        self.used = 0

    def take(self, accepted_at: float) -> tuple[float, int]:
        """The receipt of a message accepted at `accepted_at`: (when it comes, what it says)."""
        if self.block is None or self.used == len(self.block[0]):
            self._next_block()
        if not self.delays:
            assert self.block is not None
            self.delays, self.kinds = self.block[0].tolist(), self.block[1].tolist()
        i = self.used
        self.used = i + 1
        return accepted_at + self.delays[i], self.kinds[i]

    def take_many(self, accepted_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """take() for messages accepted at `accepted_at`, in that order, as arrays."""
        import numpy as np

        delays: list[np.ndarray] = []
        kinds: list[np.ndarray] = []
        count = have = len(accepted_at)
        while have:
            if self.block is None or self.used == len(self.block[0]):
                self._next_block()
            assert self.block is not None
            take = min(have, len(self.block[0]) - self.used)
            delays.append(self.block[0][self.used : self.used + take])
            kinds.append(self.block[1][self.used : self.used + take])
            self.used += take
            have -= take
        if count == 0:
            return accepted_at.copy(), np.empty(0, dtype=np.int64)
        return accepted_at + np.concatenate(delays), np.concatenate(kinds).astype(np.int64)


class Draws:
    """A sender's attempts one at a time, for code that starts them one by one:
    slot `slot`'s next attempt takes its lane's next row."""

    def __init__(self, model: SenderModel) -> None:
        self.model = model
        self.times: list[list[float]] = [[] for _ in range(model.lanes)]
        self.failed: list[list[bool]] = [[] for _ in range(model.lanes)]
        self.next = [0] * model.lanes
        # Small blocks per lane when there are many (a window of 10,000 draws a few rows a slot).
        self.size = max(16, BLOCK // model.lanes)

    def take(self, slot: int = 0) -> tuple[float, bool]:
        lane = self.model.lane_of(slot)
        i = self.next[lane]
        if i == len(self.times[lane]):
            times, failed = self.model.block(self.size, lane)
            self.times[lane], self.failed[lane], i = times.tolist(), failed.tolist(), 0
        self.next[lane] = i + 1
        return self.times[lane][i], self.failed[lane][i]

    def take_many(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` attempts at once, as arrays (for a sender that never waits and
        so never takes them one by one: one lane, whose streams simply go on)."""
        assert self.model.lanes == 1, "take_many of a sender of several lanes"
        assert self.next[0] == len(self.times[0]), "take_many after take"
        return self.model.block(count)
