"""`smsbatch plan` and `smsbatch compare`: the planner's two questions, asked of
replications in virtual time.

plan: the smallest value of one knob (the largest, for `messages`) whose
replications meet the deadline with probability at least --probability,
judged with a Wilson 95% interval (core/inference.py). The search starts
where capacity arithmetic says the deadline is just met, brackets the answer
with steps that double, then bisects. Every candidate runs replications
1, 2, ... with the same seeds (replications.replication_seed): common random
numbers, so the figures move with the knob and not with the draws.

compare: two configs on the same replication seeds, replication by
replication; the paired-t interval of b - a for each figure, and the
correlation the pairing achieved (--independent: seeds of B's own, Welch).

A knob maps onto the fields that exist (core/settings.py) with
dataclasses.replace: nothing here defines a setting.
"""

from __future__ import annotations

import hashlib
import math
import signal
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from smsbatch.config import MAX_MESSAGES, MAX_SENDERS, SENDER_RULES, whole_number
from smsbatch.core.errors import UsageError
from smsbatch.core.inference import (
    FEASIBLE,
    INCONCLUSIVE,
    Difference,
    feasibility,
    fewest_to_show,
    independent_difference,
    paired_difference,
)
from smsbatch.core.settings import SENDER_FIELDS, Settings
from smsbatch.core.source import MessageSource
from smsbatch.core.stats import wilson
from smsbatch.core.summary import Summary
from smsbatch.core.text import plural, sms_segments
from smsbatch.present.monitor import seconds_text
from smsbatch.replications import Replicator, completed, headline_key

STOPPED = "stopped"  # a candidate a stop signal cut short: neither judged nor out of replications
MAX_VALUES = 1_000_000  # a range of more values than this is too large to search
SENDER_KNOBS = ("window", "rate", "cap")  # a sender's fields a plan can vary, when the field exists


# ---- the knob ----


@dataclass(frozen=True)
class Knob:
    """One setting to vary over LO..HI in steps of `step`. Index 0 is the worst
    end (LO, or HI for messages): the search looks for the smallest index that
    is feasible."""

    name: str  # as written: B.copies, a.rate, messages
    kind: str  # copies, window, rate, cap, account, messages
    target: str  # the sender's or the account's name ('' for messages)
    low: Decimal
    high: Decimal
    step: Decimal
    integral: bool
    config_value: float | None  # what the config has
    can_go_further: bool = True  # the knob's rule allows a value beyond index 0 (copies cannot go below 1)

    @property
    def fewer_is_better(self) -> bool:
        return self.kind == "messages"

    @property
    def count(self) -> int:
        return int((self.high - self.low) / self.step) + 1

    def number(self, exact: Decimal) -> float | int:
        return int(exact) if self.integral else float(exact)

    def value(self, index: int) -> float | int:
        offset = self.step * index
        exact = self.high - offset if self.fewer_is_better else self.low + offset
        return int(exact) if self.integral else float(exact)

    def index_of(self, value: float) -> int:
        offset = (self.high - Decimal(str(value))) if self.fewer_is_better else (Decimal(str(value)) - self.low)
        return max(0, min(self.count - 1, int(offset / self.step)))

    def apply(self, settings: Settings, value: float | int) -> Settings:
        """`settings` with this knob at `value`: the existing fields, replaced."""
        if self.kind == "messages":
            return replace(settings, messages=int(value))
        if self.kind == "account":
            accounts = tuple(replace(a, rate=float(value)) if a.name == self.target else a for a in settings.accounts)
            return replace(settings, accounts=accounts)
        index = [spec.name for spec in settings.senders].index(self.target)
        spec = settings.senders[index]
        if self.kind == "copies":  # the copies go at the end: every other sender keeps its place and its draws
            copies = tuple(replace(spec, name=f"{spec.name} #{k}") for k in range(2, int(value) + 1))
            return replace(settings, senders=settings.senders + copies)
        change: dict[str, Any] = {self.kind: value}
        changed = replace(spec, **change)
        return replace(settings, senders=(*settings.senders[:index], changed, *settings.senders[index + 1 :]))

    def shown(self, value: float | int | None) -> str:
        if value is None:
            return "none"
        return f"{value:,}" if self.integral else f"{value:,.{max(0, -self.step.as_tuple().exponent)}f}"  # type: ignore[operator]


def knob_for(settings: Settings, vary: tuple[str, str, str]) -> Knob:
    """The knob of `--vary KNOB=LO..HI` for these settings; UsageError naming the rule."""
    written, low_text, high_text = vary
    where = f"argument --vary: {written}"
    name, dot, field = written.rpartition(".")
    if written == "messages":
        if settings.recipients:
            raise UsageError(f"{where}: not with --recipients (the list decides the count)")
        return _knob(written, "messages", "", low_text, high_text, True, whole_number(1, MAX_MESSAGES),
                     settings.messages)  # fmt: skip
    if not dot or field not in ("copies", "rate", *SENDER_KNOBS):
        raise UsageError(
            f"argument --vary: KNOB must be NAME.copies, NAME.window, NAME.rate, NAME.cap, ACCOUNT.rate"
            f" or messages (got {written!r})"
        )
    senders = {spec.name: spec for spec in settings.senders}
    accounts = {account.name: account for account in settings.accounts}
    if name in senders and name in accounts and field == "rate":
        raise UsageError(f"{where}: {name!r} is both a sender and an account; rename one")
    if field == "rate" and name in accounts:
        rule = SENDER_RULES["rate"]
        return _knob(written, "account", name, low_text, high_text, False, rule, accounts[name].rate)
    if name not in senders:
        known = f"the senders are {', '.join(senders)}"
        known += f"; the accounts are {', '.join(accounts)}" if accounts else ""
        raise UsageError(f"{where}: no sender is named {name!r} ({known})")
    spec = senders[name]
    if field == "copies":
        most = MAX_SENDERS - len(settings.senders) + 1
        return _knob(written, "copies", name, low_text, high_text, True, whole_number(1, most), 1)
    if field not in {row.name for row in SENDER_FIELDS} or field not in SENDER_RULES:
        raise UsageError(f"{where}: the senders have no {field}= field in this version, so it cannot vary")
    annotation = str({f.name: f.type for f in fields(type(spec))}[field])
    integral = "int" in annotation and "float" not in annotation
    current = getattr(spec, field)
    return _knob(written, field, name, low_text, high_text, integral, SENDER_RULES[field], current or None)


def _knob(
    written: str,
    kind: str,
    target: str,
    low_text: str,
    high_text: str,
    integral: bool,
    rule: Callable[[str], Any],
    current: float | None,
) -> Knob:
    where = f"argument --vary: {written}"
    for text in (low_text, high_text):
        try:
            rule(text)
        except ValueError as error:
            raise UsageError(f"{where}: LO and HI {error} (got {text!r})") from None
    try:
        low, high = Decimal(low_text), Decimal(high_text)
    except InvalidOperation:
        raise UsageError(f"{where}: LO and HI must be numbers (got {low_text!r}..{high_text!r})") from None
    if low > high:
        raise UsageError(f"{where}: LO must be at most HI (got {low_text}..{high_text})")
    if integral:
        step = Decimal(1)
    else:  # a rate is searched to the finest decimal place LO or HI is written with: 10..100 in whole numbers
        places = max(0, -int(low.as_tuple().exponent), -int(high.as_tuple().exponent))
        step = Decimal(1).scaleb(-places)
    beyond = high + step if kind == "messages" else low - step  # past index 0, the end a search may run out at
    try:  # does the knob's own rule allow it (copies cannot go below 1)?
        rule(str(int(beyond) if integral else beyond))
        further = beyond > 0
    except ValueError:
        further = False
    knob = Knob(written, kind, target, low, high, step, integral, current, further)
    if knob.count > MAX_VALUES:
        raise UsageError(
            f"{where}: a range of at most {MAX_VALUES:,} values can be searched (got {knob.count:,}:"
            f" {low_text}..{high_text} in steps of {step})"
        )
    return knob


# ---- capacity arithmetic: where the search starts ----


def capacity(settings: Settings) -> float:
    """Accepted messages a simulated second, by arithmetic: each sender's
    window/mean, cut to its rate and its gateway's cap, the accounts' caps, over the text's segments,
    times the share of attempts that succeed."""
    segments = sms_segments(settings.text).count
    caps = {account.name: account.rate for account in settings.accounts}
    free = 0.0
    by_account: dict[str, float] = {}
    for spec in settings.senders:
        sends = spec.window / spec.mean if spec.mean > 0 else math.inf
        if spec.rate:
            sends = min(sends, spec.rate)
        if spec.cap:  # its gateway accepts no more than this, whatever is sent
            sends = min(sends, spec.cap)
        accepted = sends * (1.0 - spec.fail_rate) if spec.fail_rate < 1 else 0.0
        if spec.account:
            by_account[spec.account] = by_account.get(spec.account, 0.0) + accepted
        else:
            free += accepted
    for account, accepted in by_account.items():
        free += min(accepted, caps.get(account, math.inf))
    return free / segments


def needed(settings: Settings) -> float:
    """Accepted messages a simulated second the deadline asks for (receipts: the delay and the losses)."""
    reaching = max(1e-9, 1.0 - settings.undeliverable - settings.receipt_loss) if settings.receipts else 1.0
    time = max(settings.deadline - (settings.dlr_median if settings.receipts else 0.0), 1e-9)
    return settings.deadline_share * settings.messages / reaching / time


def arithmetic_start(knob: Knob, settings: Settings) -> int:
    """The smallest index at which capacity arithmetic says the deadline is met
    (the last when none is); arithmetic is monotone in every knob, so bisected."""

    def enough(index: int) -> bool:
        candidate = knob.apply(settings, knob.value(index))
        return capacity(candidate) >= needed(candidate)

    low, high = 0, knob.count - 1
    if not enough(high):
        return high
    while low < high:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle + 1
    return low


# ---- plan ----


@dataclass
class Candidate:
    value: float | int
    summaries: list[Summary]
    verdict: str

    @property
    def met(self) -> int:
        return sum(1 for s in self.summaries if s["met_deadline"])

    @property
    def n(self) -> int:
        return len(self.summaries)

    def reach_times(self) -> list[float | None]:
        return [s["delivered_reach_s"].get("90") for s in self.summaries]

    def as_dict(self) -> dict[str, Any]:
        low, high = wilson(self.met, self.n)
        times = [t for t in self.reach_times() if t is not None]
        worst = self.worst()
        return {
            "value": self.value,
            "replications": self.n,
            "met": self.met,
            "met_ci95": [low, high],
            "verdict": self.verdict,
            "delivered_90_mean_s": statistics.fmean(times) if times else None,
            "delivered_90_reached": len(times),
            "delivered_90_worst_s": worst["delivered_reach_s"].get("90") if worst else None,
            "worst_seed": worst["seed"] if worst else None,
        }

    def worst(self) -> Summary | None:
        """The replication that delivered 90% last (one that never did, first)."""
        if not self.summaries:
            return None
        return max(self.summaries, key=lambda s: (s["delivered_reach_s"].get("90") is None,
                                                  s["delivered_reach_s"].get("90") or 0.0))  # fmt: skip


@dataclass
class PlanSearch:
    settings: Settings
    knob: Knob
    probability: float
    replicator: Replicator
    stderr: TextIO
    probed: dict[int, Candidate]

    def feasible(self, index: int) -> bool:
        if index not in self.probed:
            self.probed[index] = self._judge(index)
        return self.probed[index].verdict == FEASIBLE

    def _judge(self, index: int) -> Candidate:
        value = self.knob.value(index)
        candidate_settings = self.knob.apply(self.settings, value)
        count = self.settings.replications or self.settings.max_replications
        probability = self.probability

        def decided(summaries: list[Summary]) -> bool:
            met = sum(1 for s in summaries if s["met_deadline"])
            return feasibility(met, len(summaries), probability) is not None

        tasks = ((candidate_settings, r) for r in range(1, count + 1))
        enough = None if self.settings.replications else decided
        summaries = [s for s in self.replicator.run(tasks, enough, brief=True) if completed(s)]
        met = sum(1 for s in summaries if s["met_deadline"])
        undecided = STOPPED if self.replicator.stopped else INCONCLUSIVE  # cut short, or out of replications
        verdict = feasibility(met, len(summaries), probability) or undecided
        candidate = Candidate(value, summaries, verdict)
        if self.settings.progress:
            low, high = wilson(met, len(summaries))
            self.stderr.write(
                f"{self.knob.name} = {self.knob.shown(value)}: {verdict}, {met} of {len(summaries)} replications"
                f" met the deadline, Wilson 95% [{low:.1%}, {high:.1%}]\n"
            )
            self.stderr.flush()
        return candidate

    def run(self) -> int | None:
        """The smallest feasible index, or None: start, bracket with doubling steps, bisect."""
        last = self.knob.count - 1
        start = arithmetic_start(self.knob, self.settings)
        good: int | None = None
        bad: int | None = None
        if self.feasible(start):
            good, step = start, 1
            while good > 0 and not self.replicator.stopped:
                probe = max(0, good - step)
                if not self.feasible(probe):
                    bad = probe
                    break
                good, step = probe, step * 2
            if bad is None:
                return good
        else:
            bad, step = start, 1
            while bad < last and not self.replicator.stopped:
                probe = min(last, bad + step)
                if self.feasible(probe):
                    good = probe
                    break
                bad, step = probe, step * 2
            if good is None:
                return None
        while good - bad > 1 and not self.replicator.stopped:
            middle = (good + bad) // 2
            if self.feasible(middle):
                good = middle
            else:
                bad = middle
        return None if self.replicator.stopped else good


def check_plan(settings: Settings, probability: float) -> None:
    """A plan that could never say feasible is bad input."""
    most = settings.replications or settings.max_replications
    flag = "--replications" if settings.replications else "--max-replications"
    if fewest_to_show(probability) > most:
        raise UsageError(
            f"argument {flag}: {most:,} replications can never show --probability {probability:g}"
            f" with a Wilson 95% interval; it needs at least {fewest_to_show(probability):,}"
        )


def run_plan(
    settings: Settings, vary: tuple[str, str, str], probability: float, source: MessageSource,
    stdout: TextIO, stderr: TextIO, signals: list[int], cluster: Any = None,
) -> Summary:  # fmt: skip
    """The plan, said on stdout; its summary: the answer's replication 1 (or the best candidate's), with `plan`."""
    knob = knob_for(settings, vary)
    check_plan(settings, probability)
    sends = "deliver" if settings.receipts else "send"
    stdout.write(
        f"smsbatch plan: the {'largest' if knob.fewer_is_better else 'smallest'} {knob.name} from"
        f" {knob.shown(knob.number(knob.low))} to {knob.shown(knob.number(knob.high))}; feasible when at least"
        f" {probability:.0%} of the replications {sends} {settings.deadline_share:.0%} by"
        f" {seconds_text(settings.deadline)} (Wilson 95%), up to {settings.max_replications:,} replications each;"
        f" common random numbers: every candidate runs the same seeds (seed {settings.seed}"
        f"{'' if settings.seed_given else ', pass --seed to repeat'})\n"
    )
    stdout.flush()
    probed: dict[int, Candidate] = {}
    with Replicator(source, settings.jobs, signals, stderr, cluster=cluster, virtual=True) as replicator:
        search = PlanSearch(settings, knob, probability, replicator, stderr, probed)
        answer = search.run()
        shown = answer if answer is not None else (max(probed) if probed else None)
        full = (
            replicator.run([(knob.apply(settings, knob.value(shown)), 1)])
            if shown is not None and not replicator.stopped
            else []
        )
        failed = replicator.failed
    candidates = sorted(probed.values(), key=lambda c: c.value)
    answer_value = knob.value(answer) if answer is not None else None
    if failed and not signals:
        stdout.write("plan stopped: a replication failed (said above); no answer\n")
    else:
        stdout.write(_answer_line(settings, knob, answer_value, probed.get(answer) if answer is not None else None,
                                  candidates, signals))  # fmt: skip
    stdout.write(_plan_table(knob, candidates))
    stdout.flush()
    summary = dict(full[0]) if full else {}
    summary["plan"] = {
        "knob": knob.name,
        "answer": answer_value,
        "config_value": knob.config_value,
        "looking_for": "largest" if knob.fewer_is_better else "smallest",
        "range": [knob.value(0), knob.value(knob.count - 1)]
        if not knob.fewer_is_better
        else [knob.value(knob.count - 1), knob.value(0)],
        "probability": probability,
        "max_replications": settings.max_replications,
        "replications_per_candidate": settings.replications or "auto",
        "common_random_numbers": True,
        "seed": settings.seed,
        "candidates": [c.as_dict() for c in candidates],
        "replications_run": sum(c.n for c in candidates),
    }
    if signals:
        summary["exit_status"] = _signal_status(signals)
    elif failed:
        summary["exit_status"] = 1
    else:
        summary["exit_status"] = 0 if answer is not None else 3
    return summary


def _answer_line(
    settings: Settings, knob: Knob, answer: float | int | None, best: Candidate | None,
    candidates: list[Candidate], signals: list[int],
) -> str:  # fmt: skip
    sends = "deliver" if settings.receipts else "send"
    target = f"{sends} {settings.deadline_share:.0%} by {seconds_text(settings.deadline)}"
    if signals:
        return f"plan stopped before it had an answer ({plural(len(candidates), 'candidate')} probed)\n"
    if answer is None or best is None:
        end = "lower LO" if knob.fewer_is_better else "raise HI"
        edge = knob.value(knob.count - 1)
        worst = next((c for c in candidates if c.value == edge), None)
        at_edge = (
            f"at {knob.shown(edge)}, {worst.met} of {worst.n} replications {target} ({worst.verdict})" if worst else ""
        )
        span = f"{knob.shown(knob.number(knob.low))}..{knob.shown(knob.number(knob.high))}"
        return f"no value of {knob.name} in {span} is feasible: {at_edge}; {end} to look further\n"
    low, high = wilson(best.met, best.n)
    has = _against_config(knob, answer)
    at_end = ""
    if answer == knob.value(0):
        which, move = ("highest", "raise HI") if knob.fewer_is_better else ("lowest", "lower LO")
        further = f": {move} to look further" if knob.can_go_further else f", the {which} it can be"
        at_end = f" (the {which} value searched{further})"
    return (
        f"{knob.name} = {knob.shown(answer)}{has}: {best.met} of {best.n} replications {target},"
        f" Wilson 95% [{low:.1%}, {high:.1%}]{at_end}\n"
    )


def _against_config(knob: Knob, answer: float | int) -> str:
    current = knob.config_value
    if current is None:
        return " (the config has none)"
    if knob.kind == "copies":
        more = int(answer) - int(current)
        if more == 0:
            return ", as the config has"
        return f", {abs(more)} {'more' if more > 0 else 'fewer'} than the config has"
    return f" (the config has {knob.shown(current)})"


def _plan_table(knob: Knob, candidates: list[Candidate]) -> str:
    head = ("value", "replications", "met", "Wilson 95%", "90% mean", "90% worst (seed)", "verdict")
    rows = [head]
    for c in candidates:
        d = c.as_dict()
        low, high = d["met_ci95"]
        mean = seconds_text(d["delivered_90_mean_s"]) if d["delivered_90_mean_s"] is not None else "never"
        worst = seconds_text(d["delivered_90_worst_s"]) if d["delivered_90_worst_s"] is not None else "never"
        rows.append((knob.shown(c.value), f"{c.n:,}", f"{c.met:,} of {c.n:,}", f"[{low:.1%}, {high:.1%}]", mean,
                     f"{worst} ({d['worst_seed']})", c.verdict))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


# ---- compare ----

COMPARED = ("delivered_reach_s.50", "delivered_reach_s.90", "delivered_reach_s.99", "within_deadline", "sim_elapsed_s")


def compared_figure(summary: Summary, key: str) -> float | None:
    if key.startswith("delivered_reach_s."):
        value = summary["delivered_reach_s"].get(key.split(".", 1)[1])
        return None if value is None else float(value)
    return float(summary[key])


def independent_seed(seed: int) -> int:
    """B's own seed under --independent: none of its replications shares A's."""
    digest = hashlib.sha256(f"{seed}/independent".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def difference_of(
    key: str, a: list[Summary], b: list[Summary], paired: bool
) -> tuple[dict[str, Any], Difference | None]:
    """A figure's means on each side (over the replications that reached it) and
    the difference b - a: over the pairs where both did, or (independent) mean against mean."""
    a_values, b_values = [compared_figure(s, key) for s in a], [compared_figure(s, key) for s in b]
    a_reached = [v for v in a_values if v is not None]
    b_reached = [v for v in b_values if v is not None]
    facts: dict[str, Any] = {
        "a_mean": statistics.fmean(a_reached) if a_reached else None,
        "b_mean": statistics.fmean(b_reached) if b_reached else None,
        "a_reached": len(a_reached),
        "b_reached": len(b_reached),
        "n": 0,
        "difference": None,
        "correlation": None,
    }
    if paired:
        pairs = [(x, y) for x, y in zip(a_values, b_values, strict=True) if x is not None and y is not None]
        if not pairs:
            return facts, None
        diff = paired_difference([x for x, _ in pairs], [y for _, y in pairs])
    else:
        if len(a_reached) < 2 or len(b_reached) < 2:
            return facts, None
        diff = independent_difference(a_reached, b_reached)
    facts.update(n=diff.n, difference={"mean": diff.mean, "ci95": [diff.low, diff.high]}, correlation=diff.correlation)
    return facts, diff


def compare_enough(settings: Settings, paired: bool) -> Callable[[list[Summary]], bool]:
    """--replications auto for compare: the headline difference's 95% half-width
    within --precision of A's mean of it, at least 10 pairs."""

    def enough(summaries: list[Summary]) -> bool:
        a, b = summaries[0::2], summaries[1::2]
        if len(a) != len(b) or len(a) < 10:
            return False
        key = headline_key(a + b)
        _, diff = difference_of(key, a, b, paired)
        if diff is None:
            return False
        scale = abs(statistics.fmean(compared_figure(s, key) or 0.0 for s in a))
        return diff.half <= settings.precision * scale

    return enough


def run_compare(
    a: Settings, b: Settings, names: tuple[str, str], independent: bool, source: MessageSource,
    stdout: TextIO, stderr: TextIO, signals: list[int], cluster: Any = None,
) -> Summary:  # fmt: skip
    b = replace(b, seed=independent_seed(a.seed) if independent else a.seed)
    paired = not independent
    count = a.replications or a.max_replications
    stdout.write(
        f"smsbatch compare: a = {names[0]}, b = {names[1]};"
        + (
            f" common random numbers: both run the same seeds, replication by replication (seed {a.seed}"
            f"{'' if a.seed_given else ', pass --seed to repeat'})\n"
            if paired
            else f" independent seeds (a: {a.seed}, b: {b.seed}): no pairing\n"
        )
    )
    stdout.flush()

    def tasks() -> Iterator[tuple[Settings, int]]:
        for r in range(1, count + 1):
            yield a, r
            yield b, r

    with Replicator(source, a.jobs, signals, stderr, cluster=cluster, virtual=True) as replicator:
        enough = None if a.replications else compare_enough(a, paired)
        done = replicator.run_positions(tasks(), enough, brief=True)
        full = replicator.run([(a, 1)]) if not replicator.stopped else []  # a's replication 1, whole: the report's
        failed = replicator.failed
    # Task 2k is a's replication k + 1 and task 2k + 1 b's: a pair counts when both ran to their end.
    pairs = [(done[i], done[i + 1]) for i in range(0, max(done, default=-1) + 1, 2) if i in done and i + 1 in done]
    pairs = [(x, y) for x, y in pairs if completed(x) and completed(y)]
    side_a, side_b = [x for x, _ in pairs], [y for _, y in pairs]
    metrics: dict[str, Any] = {}
    diffs: dict[str, Difference | None] = {}
    for key in COMPARED:
        metrics[key], diffs[key] = difference_of(key, side_a, side_b, paired)
    headline = headline_key(side_a + side_b) if side_a and side_b else "sim_elapsed_s"
    stdout.write(_compare_table(metrics, paired))
    correlation = metrics[headline]["correlation"]
    if paired:
        stdout.write(
            f"  pairing: the correlation of a and b over the {plural(len(side_a), 'pair')} is"
            f" {'n/a (a constant figure)' if correlation is None else f'{correlation:.3f}'} for {headline}\n"
        )
    stdout.write(_verdict(headline, diffs[headline], paired) + "\n")
    auto = _compare_auto(a, headline, diffs[headline], side_a, len(side_a)) if not a.replications else None
    if auto is not None:
        stdout.write(auto["line"])
    stdout.flush()
    summary: Summary = dict(full[0]) if full else {}
    summary |= {
        "compare": {
            "a": names[0],
            "b": names[1],
            "replications": min(len(side_a), len(side_b)),
            "replications_asked": a.replications or "auto",
            "common_random_numbers": paired,
            "seed": a.seed,
            "headline": headline,
            "metrics": metrics,
            **({"auto_replications": {k: v for k, v in auto.items() if k != "line"}} if auto else {}),
        },
        "exit_status": _signal_status(signals) if signals else (1 if failed else 0),
    }
    return summary


def _signal_status(signals: list[int]) -> int:
    return 130 if signals[0] == signal.SIGINT else 143


def _compare_auto(
    a: Settings, key: str, diff: Difference | None, side_a: list[Summary], pairs: int
) -> dict[str, Any] | None:
    """How many pairs --replications auto took, and why it stopped."""
    if diff is None or not side_a:
        return None
    scale = abs(statistics.fmean(compared_figure(s, key) or 0.0 for s in side_a))
    if pairs >= 10 and diff.half <= a.precision * scale:
        why, said = "precise", f"within --precision {a.precision:.2%}"
    elif pairs >= a.max_replications:
        why, said = "max-replications", f"still above --precision {a.precision:.2%} at --max-replications"
    else:
        why, said = "stopped", "stopped before it was precise"
    relative = diff.half / scale if scale else None
    shown = f"{diff.half:.3g}s" + (f", {relative:.2%} of a's mean" if relative is not None else "")
    return {
        "replications": pairs,
        "figure": key,
        "half_width": diff.half,
        "relative_half_width": relative,
        "precision": a.precision,
        "max_replications": a.max_replications,
        "stopped_because": why,
        "line": f"replications auto: {plural(pairs, 'pair')}; the 95% half-width of the {key} difference is"
        f" {shown}: {said}\n",
    }


def _compare_table(metrics: dict[str, Any], paired: bool) -> str:
    rows = [("figure", "a mean", "b mean", "b - a", "95% interval", "pairs" if paired else "n", "")]
    for key, m in metrics.items():
        fmt = _fmt(key)
        a_mean = "never" if m["a_mean"] is None else fmt(m["a_mean"])
        b_mean = "never" if m["b_mean"] is None else fmt(m["b_mean"])
        diff = m["difference"]
        if diff is None:
            rows.append((key, a_mean, b_mean, "", "", "0", "not reached on both sides"))
            continue
        low, high = diff["ci95"]
        if low == high == diff["mean"] == 0.0:
            verdict = "no difference (the same in every pair)"
        elif low > 0 or high < 0:
            verdict = "a real difference"
        else:
            verdict = "no difference shown"
        rows.append((key, a_mean, b_mean, fmt(diff["mean"], True), f"[{fmt(low, True)}, {fmt(high, True)}]",
                     str(m["n"]), verdict))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(cell.rjust(w) if 0 < i < 6 else cell.ljust(w) for i, (cell, w) in
             enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def _fmt(key: str) -> Callable[..., str]:
    if key == "within_deadline":
        return lambda v, signed=False: f"{v:+.2%}" if signed else f"{v:.2%}"
    return lambda v, signed=False: f"{v:+.2f}s" if signed else f"{v:.2f}s"


def _verdict(key: str, diff: Difference | None, paired: bool) -> str:
    if diff is None:
        return f"verdict: {key} was not reached on both sides often enough to compare"
    what = {"delivered_reach_s.90": "delivers 90%", "sim_elapsed_s": "finishes"}.get(key, key)
    if diff.mean == 0.0 and diff.low == diff.high == 0.0:
        return f"verdict: no difference: b {what} at exactly the same time as a in every replication"
    sooner = "sooner" if diff.mean < 0 else "later"
    body = f"verdict: b {what} {abs(diff.mean):.3g}s {sooner} than a, 95% [{diff.low:+.3g}, {diff.high:+.3g}]"
    if diff.excludes_zero:
        return body + ": a real difference"
    return (
        body
        + ": no difference shown (the interval holds 0)"
        + ("" if paired else "; pairing by seed (without --independent) may tell them apart")
    )
