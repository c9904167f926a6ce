"""smsbatch's speed and memory, against its targets, on this machine.

Absolute times are noisy on a shared machine, so the headline figures are
ratios measured side by side in the same run, and each figure is the median of
several runs, alternating between the things compared.

    python scripts/benchmark.py [--quick] [--runs N] [--only NAME[,NAME]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
SMSBATCH = [sys.executable, "-m", "smsbatch", "--no-progress"]
BARE = [sys.executable, os.path.join(HERE, "bare_pipeline.py")]
BARE_DES = [sys.executable, os.path.join(HERE, "bare_des.py")]
EMERGENCY = ("-c", os.path.join(HERE, "..", "configs", "emergency.ini"))
GATEWAYS = ("-c", os.path.join(HERE, "..", "configs", "gateways.ini"))


@dataclass
class Measured:
    seconds: float  # real, process start to exit
    peak: int  # the highest value `watch` saw while it ran (0 without one)
    summary: dict | None


def process_children() -> dict[int, list[int]]:
    """Every process's children, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    children.setdefault(int(handle.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                pass
    return children


def descendants(pid: int) -> list[int]:
    children, found, todo = process_children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for current in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def measure(command: list[str], watch: Callable[[int], int] | None = None) -> Measured:
    """Run `command`; with `watch`, sample watch(pid) every 5 ms and keep the peak."""
    summary_path = None
    if command[:3] == SMSBATCH[:3]:  # smsbatch, any subcommand
        summary_path = tempfile.mktemp(suffix=".json")
        command = [*command, "--summary-json", summary_path]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    if watch:
        while proc.poll() is None:
            peak = max(peak, watch(proc.pid))
            time.sleep(0.005)
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{err.decode()[-2000:]}")
    summary = None
    if summary_path:
        with open(summary_path) as handle:
            summary = json.load(handle)
        os.unlink(summary_path)
    return Measured(seconds, peak, summary)


def sms(*args: str) -> list[str]:
    return [*SMSBATCH, "--seed", "1", *[str(a) for a in args]]


def efficiency(summary: dict, lanes: int, whole_run: bool = False) -> float:
    """Ideal time (all drawn send time spread over `lanes`) / the real wall time
    of the sending: from when every process is up to the end (or of the whole
    run, process start-up included)."""
    drawn = summary["avg_send_time_s"] * summary["attempts"] / summary["speed"]
    wall = summary["elapsed_s"] - (0.0 if whole_run else summary["startup_s"])
    return drawn / lanes / wall


Row = tuple[str, str, str, bool]  # figure, measured, target, holds


def throughput(runs: int, messages: int, bare_one_messages: int) -> list[Row]:
    ours, bare100, bare1 = [], [], []
    for _ in range(runs):  # alternate, so load on the machine hits all three alike
        ours.append(messages / measure(sms("--messages", messages, "--sender", "0:0", "--sender", "0:0")).seconds)
        bare100.append(messages / measure([*BARE, str(messages), "100"]).seconds)
        bare1.append(bare_one_messages / measure([*BARE, str(bare_one_messages), "1"]).seconds)
    ratio100 = statistics.median(o / b for o, b in zip(ours, bare100, strict=False))
    ratio1 = statistics.median(o / b for o, b in zip(ours, bare1, strict=False))
    rate = statistics.median(ours)
    return [
        (
            f"zero-wait throughput, {messages:,} msgs, 2 senders",
            f"{rate:,.0f} msg/s",
            ">= 300,000 msg/s",
            rate >= 300_000,
        ),
        ("  bare pipeline, 100 msgs per put", f"{statistics.median(bare100):,.0f} msg/s", "", True),
        ("  bare pipeline, 1 msg per put", f"{statistics.median(bare1):,.0f} msg/s", "", True),
        ("  ratio to bare pipeline, 100 per put", f"{ratio100:.2f}", ">= 0.50", ratio100 >= 0.5),
        ("  ratio to bare pipeline, 1 per put", f"{ratio1:.2f}", "(info)", True),
    ]


def scheduling(runs: int, seconds: float, quick: bool = False) -> list[Row]:
    rows = []
    # (mean, senders, target for the sending, target for the whole run with start-up, if any)
    cases = [
        (0.01, 4, 0.95, None),
        (0.01, 16, 0.95, 0.95),
        (0.01, 64, 0.95, None),
        (0.01, 256, 0.90, 0.70),
        (0.001, 16, 0.85, None),
    ]
    for mean, senders, target, whole_target in cases[::4] if quick else cases:  # quick: the first and the last
        messages = max(senders, int(seconds / mean) * senders)
        senders_args = []
        for _ in range(senders):
            senders_args += ["--sender", f"{mean}:0"]
        summaries = [measure(sms("--messages", messages, *senders_args)).summary for _ in range(runs)]
        value = statistics.median(efficiency(s, senders) for s in summaries)
        whole = statistics.median(efficiency(s, senders, whole_run=True) for s in summaries)
        rows.append(
            (
                f"scheduling efficiency, mean {mean * 1000:g} ms, {senders} senders",
                f"{value:.3f} (run {whole:.3f})",
                f">= {target}",
                value >= target,
            )
        )
        if whole_target is not None:
            startup = statistics.median(s["startup_s"] for s in summaries)
            rows.append(
                (
                    f"  the whole run, start-up included (start-up {startup:.3f} s)",
                    f"{whole:.3f}",
                    f">= {whole_target}",
                    whole >= whole_target,
                )
            )
    return rows


def memory(runs: int, small: int, large: int) -> list[Row]:
    small_peaks, large_peaks = [], []
    for _ in range(runs):
        for count, peaks in ((small, small_peaks), (large, large_peaks)):
            peaks.append(measure(sms("--messages", count, "--sender", "0:0", "--sender", "0:0"), watch=tree_rss).peak)
    low, high = statistics.median(small_peaks), statistics.median(large_peaks)
    growth = (high - low) / 2**20
    return [
        (f"peak RSS of the process tree, {small:,} msgs", f"{low / 2**20:.1f} MB", "", True),
        (f"peak RSS of the process tree, {large:,} msgs", f"{high / 2**20:.1f} MB", "< 200 MB", high < 200 * 2**20),
        ("  growth", f"{growth:.1f} MB", "< 10 MB", growth < 10),
    ]


def startup(runs: int) -> list[Row]:
    value = statistics.median(
        measure(sms("--messages", 1, "--sender", "0:0")).seconds for _ in range(5 if runs > 1 else 1)
    )
    return [("start-up: a one-message run, end to end", f"{value:.3f} s", "< 0.6 s", value < 0.6)]


def window(runs: int, messages: int, size: int, speed: float = 1.0) -> list[Row]:
    rows = []
    for distribution, target in (("constant", 0.9), ("lognormal", None)):
        spec = f"1:0:window={size}:distribution={distribution}"
        command = sms("--messages", messages, "--sender", spec, "--speed", speed)
        values = [efficiency(measure(command).summary, size) for _ in range(runs)]
        value = statistics.median(values)
        name = f"one sender, window {size:,}, mean 1 s {distribution}, {messages:,} msgs"
        if target is None:  # 10 rounds of 10,000 draws each: the longest chain sets the end
            rows.append((name, f"{value:.3f}", "(info)", True))
        else:
            rows.append((name, f"{value:.3f}", f">= {target}", value >= target))
    return rows


def rate_limit(runs: int, messages: int, rate: int) -> list[Row]:
    measured = []
    for _ in range(runs):
        summary = measure(sms("--messages", messages, "--sender", f"0.001:0:window=100:rate={rate}")).summary
        measured.append(summary["senders"][0]["rate_per_s"])
    value = statistics.median(measured)
    error = abs(value - rate) / rate
    return [(f"rate={rate} sender: measured rate", f"{value:,.1f}/s ({error:.2%} off)", "within 2%", error <= 0.02)]


def virtual_speed(runs: int, messages: int) -> list[Row]:
    """--speed max against the model written the obvious way (scripts/bare_des.py),
    the emergency config's senders, start-up excluded on both sides: the bare
    loop's own timer, and smsbatch's elapsed_s (the simulation, statistics
    included, without the interpreter's start)."""
    ours, bare = [], []
    for _ in range(runs):
        summary = measure(sms(*EMERGENCY, "--messages", messages, "--seed", 7, "--speed", "max")).summary
        ours.append(summary["elapsed_s"])
        done = subprocess.run([*BARE_DES, str(messages), "7"], capture_output=True, text=True, check=True)
        bare.append(json.loads(done.stdout)["loop_s"])
    ratio = statistics.median(b / o for o, b in zip(ours, bare, strict=False))
    return [
        (
            f"virtual time, emergency config, {messages:,} msgs",
            f"{messages / statistics.median(ours):,.0f} msg/s",
            "",
            True,
        ),
        ("  bare heapq loop of the same model", f"{messages / statistics.median(bare):,.0f} msg/s", "", True),
        ("  ratio to the bare loop (statistics kept)", f"{ratio:.2f}", ">= 0.8", ratio >= 0.8),
    ]


# The virtual engine in a process of its own, start-up excluded: `python -c ENGINE PATH ARGV...`,
# PATH "fast" (the fast path where the model allows it, as --speed max runs) or "loop" (the event loop alone).
ENGINE = """
import json, sys, time
from smsbatch.config import parse_settings
from smsbatch.core.sender_model import RunOutages, SenderModel, account_caps
from smsbatch.core.timeline import Timeline, first_width
from smsbatch.virtual.engine import VirtualEngine
settings = parse_settings(sys.argv[2:])
models = [SenderModel(spec, settings, i) for i, spec in enumerate(settings.senders)]
timeline = Timeline([s.name for s in settings.senders], first_width(settings, settings.messages))
start = time.perf_counter()
engine = VirtualEngine(models, settings.messages, timeline, settings.deadline, accounts=account_caps(settings),
                       outages=RunOutages(settings), vectorise=sys.argv[1] == "fast")
outcome = engine.run()
print(json.dumps({"seconds": time.perf_counter() - start, "sim_elapsed_s": outcome.sim_elapsed}))
"""


def engine_seconds(path: str, argv: tuple[object, ...]) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", ENGINE, path, *map(str, argv)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    return result["seconds"], result["sim_elapsed_s"]


def side_by_side(
    runs: int, base: tuple[object, ...], bare_argv: list[str], command_extra: tuple[str, ...] = ()
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seconds of the fast path, of the event loop alone (checked the same run),
    of scripts/bare_des.py, and the command's own elapsed_s, `runs` times, alternating."""
    fast, loop, bare, command = [], [], [], []
    for _ in range(runs):
        seconds, fast_sim = engine_seconds("fast", base)
        fast.append(seconds)
        seconds, loop_sim = engine_seconds("loop", base)
        loop.append(seconds)
        if fast_sim != loop_sim:
            raise SystemExit(f"benchmark: the fast path's run is not the loop's: {fast_sim} against {loop_sim}")
        done = subprocess.run([*BARE_DES, *bare_argv], capture_output=True, text=True, check=True)
        bare.append(json.loads(done.stdout)["loop_s"])
        command.append(measure(sms(*base, *command_extra)).summary["elapsed_s"])
    return fast, loop, bare, command


def virtual_fast(runs: int, messages: int) -> list[Row]:
    """The fast path of --speed max (virtual/fast.py) against the event loop it
    hands over to and against scripts/bare_des.py, side by side, alternating,
    start-up excluded on every side, for the emergency config and the four-sender
    set; and the whole command's own elapsed_s for the fast path."""
    rows: list[Row] = []
    for name, argv, model in (
        ("emergency config", EMERGENCY, "emergency"),
        ("four-sender set", FOUR_SENDERS, "four"),
    ):
        base = (*argv, "--messages", messages, "--seed", 7)
        fast, loop, bare, command = side_by_side(runs, base, [str(messages), "7", model], ("--speed", "max"))
        ratio = statistics.median(b / f for f, b in zip(fast, bare, strict=True))
        over_loop = statistics.median(lo / f for f, lo in zip(fast, loop, strict=True))
        rate = messages / statistics.median(fast)
        rows += [
            (f"virtual fast path, {name}, {messages:,} msgs", f"{rate:,.0f} msg/s", "", True),
            ("  the event loop alone, same run", f"{messages / statistics.median(loop):,.0f} msg/s", "", True),
            ("  bare heapq loop (scripts/bare_des.py)", f"{messages / statistics.median(bare):,.0f} msg/s", "", True),
            ("  smsbatch --speed max, its elapsed_s", f"{messages / statistics.median(command):,.0f} msg/s", "", True),
            ("  ratio fast path / bare loop", f"{ratio:.1f}", ">= 10", ratio >= 10),
            ("  ratio fast path / event loop", f"{over_loop:.1f}", "(info)", True),
        ]
    value = statistics.median(
        measure(sms("--messages", 1, "--speed", "max")).seconds for _ in range(5 if runs > 1 else 1)
    )
    rows.append(("start-up: a one-message --speed max run, end to end", f"{value:.3f} s", "< 0.6 s", value < 0.6))
    return rows


def virtual_memory(large: int, huge: int) -> list[Row]:
    peaks = {}
    for count in (large, huge):
        peaks[count] = measure(sms(*EMERGENCY, "--messages", count, "--speed", "max"), watch=tree_rss).peak
    per_message = (peaks[huge] - peaks[large]) / (huge - large)
    return [
        (
            f"virtual time: peak RSS, {large:,} msgs",
            f"{peaks[large] / 2**20:.1f} MB",
            "< 150 MB",
            peaks[large] < 150 * 2**20,
        ),
        (f"  peak RSS, {huge:,} msgs", f"{peaks[huge] / 2**20:.1f} MB", "", True),
        ("  growth per message", f"{per_message:.2f} bytes", "< 4 bytes", per_message < 4),
    ]


def gateways_speed(runs: int, messages: int, large: int, huge: int) -> list[Row]:
    """configs/gateways.ini in virtual time (segments, accounts, receipts, an outage,
    a backup, validity): the engine in a process of its own, start-up excluded, the
    fast path beside the event loop alone and the bare loop of the plain model,
    alternating, `messages` each; and peak memory at two sizes, `large` and `huge`
    (flat: a few bytes a message at most)."""
    base = (*GATEWAYS, "--messages", messages, "--seed", 7)
    ours, loop, bare, command = side_by_side(runs, base, [str(messages), "7"])
    ratio = statistics.median(b / o for o, b in zip(ours, bare, strict=False))
    over_loop = statistics.median(lo / o for o, lo in zip(ours, loop, strict=True))
    peaks = {count: measure(sms(*GATEWAYS, "--messages", count), watch=tree_rss).peak for count in (large, huge)}
    per_message = (peaks[huge] - peaks[large]) / (huge - large)
    return [
        (
            f"virtual time, gateways config, {messages:,} msgs",
            f"{messages / statistics.median(ours):,.0f} msg/s",
            "",
            True,
        ),
        ("  the event loop alone, same run", f"{messages / statistics.median(loop):,.0f} msg/s", "", True),
        (
            "  smsbatch -c configs/gateways.ini, its elapsed_s",
            f"{messages / statistics.median(command):,.0f} msg/s",
            "",
            True,
        ),
        ("  ratio to the bare loop of the plain model", f"{ratio:.2f}", ">= 3", ratio >= 3),
        ("  ratio fast path / event loop", f"{over_loop:.1f}", "(info)", True),
        (
            f"  peak RSS, {large:,} msgs",
            f"{peaks[large] / 2**20:.1f} MB",
            "< 150 MB",
            peaks[large] < 150 * 2**20,
        ),
        (f"  peak RSS, {huge:,} msgs", f"{peaks[huge] / 2**20:.1f} MB", "", True),
        ("  growth per message", f"{per_message:.2f} bytes", "< 4 bytes", per_message < 4),
    ]


def answer_by_speed(messages: int, speeds: tuple[str, ...]) -> list[Row]:
    """The emergency config's sim_elapsed_s at each speed, against the model (--speed max).
    A real-time figure must be within 3% of the model, or say it is not faithful."""
    rows, model = [], None
    for speed in ("max", *speeds):
        summary = measure(sms(*EMERGENCY, "--messages", messages, "--seed", 7, "--speed", speed)).summary
        elapsed, faithful, lag = summary["sim_elapsed_s"], summary["faithful"], summary["lag_s"]
        if model is None:
            model = elapsed
            rows.append(
                (f"sim_elapsed_s, emergency, {messages:,} msgs, --speed max", f"{elapsed:,.1f} s", "the model", True)
            )
            continue
        off = elapsed / model - 1
        holds = abs(off) <= 0.03 or not faithful
        rows.append(
            (
                f"  --speed {speed}: {'faithful' if faithful else 'NOT faithful'}, lag {lag:,.2f} s",
                f"{elapsed:,.1f} s ({off:+.1%})",
                "3% or not faithful",
                holds,
            )
        )
    return rows


# The four-sender set of issue 20: carriers with windows and a rate cap, a slow modem, one retry.
FOUR_SENDERS = (
    *("--sender", "0.3:0.03:window=10", "--sender", "0.8:0.06:window=30:rate=20"),
    *("--sender", "2:0.1:window=50", "--sender", "5:0.2", "--max-retries", 1),
)


def faithful_share(runs: int, messages: int, default_messages: int) -> list[Row]:
    """How often real time says faithful at a speed a quiet machine follows (its
    figures are then the model's: the same run in virtual time), seeds 5, 6, ...;
    and a run made to drift says NOT faithful whenever a figure moved over 3%."""
    rows: list[Row] = []
    for name, argv in (
        (f"four senders, x200, {messages:,} msgs", (*FOUR_SENDERS, "--messages", messages, "--speed", 200)),
        (f"default senders, x10, {default_messages:,} msgs", ("--messages", default_messages, "--speed", 10)),
    ):
        said = [bool(measure(sms(*argv, "--seed", 5 + i)).summary["faithful"]) for i in range(runs)]
        share = sum(said) / len(said)
        measured = f"{share:.2f} ({sum(said)} of {len(said)})"
        rows.append((f"share of runs faithful: {name}", measured, ">= 0.9", share >= 0.9))
    return [*rows, drifted(messages)]


def drifted(messages: int) -> Row:
    """The four senders at x200 with the busiest sender stopped (SIGSTOP) for 0.3 s
    of real time, 60 s simulated: it finishes its due sends late, the others take its
    work meanwhile, and the figures move; the run must say so when they move over 3%."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "summary.json")
        argv = (*FOUR_SENDERS, "--messages", messages, "--speed", 200, "--seed", 5, "--summary-json", path)
        with started(*argv) as run:
            sender = under_way(run, 4)[0]
            os.kill(sender, signal.SIGSTOP)
            time.sleep(0.3)  # the stall itself: what the row measures the effect of
            os.kill(sender, signal.SIGCONT)
            run.exit_seconds(time.monotonic(), status=0)
        with open(path) as handle:
            summary = json.load(handle)
    model, faithful = summary["model_check"]["sim_elapsed_s"], summary["faithful"]
    off = summary["sim_elapsed_s"] / model - 1
    return (
        f"  sim_elapsed_s, a sender stalled 0.3 s: {'faithful' if faithful else 'NOT faithful'}",
        f"{summary['sim_elapsed_s']:,.1f} s ({off:+.1%})",
        "3% or not faithful",
        abs(off) <= 0.03 or not faithful,
    )


def replications(runs: int, count: int, messages: int) -> list[Row]:
    one, two = [], []
    for _ in range(runs):  # alternate, so load on the machine hits both alike
        for jobs, times in ((1, one), (2, two)):
            times.append(
                measure(
                    sms(*EMERGENCY, "--messages", messages, "--speed", "max", "--replications", count, "--jobs", jobs)
                ).seconds
            )
    ratio = statistics.median(t / o for o, t in zip(one, two, strict=False))
    return [
        (f"{count} replications of {messages:,} msgs, virtual, 1 job", f"{statistics.median(one):.2f} s", "", True),
        ("  2 jobs", f"{statistics.median(two):.2f} s", "", True),
        ("  ratio 2 jobs / 1 job", f"{ratio:.2f}", "<= 0.6", ratio <= 0.6),
    ]


PLAN = ("plan", *EMERGENCY, "--vary", "carrier-a.copies=1..40", "--seed", 1, "--no-progress")


def planning(messages: int, deadline: float, probability: float) -> list[Row]:
    """`smsbatch plan` over carrier-a.copies=1..40 (seconds, replications run),
    and the same plan on a local Dask cluster of 2 workers (Dask's own commands)
    against --jobs 2, side by side; the two must give the same candidates, to the bit."""
    argv = [*SMSBATCH[:3], *map(str, PLAN), "--messages", str(messages), "--deadline", str(deadline)]
    argv += ["--probability", str(probability)]
    here = measure([*argv, "--jobs", "2"])
    plan = here.summary["plan"]
    rows: list[Row] = [
        (f"plan, carrier-a.copies=1..40, {messages:,} msgs, --jobs 2", f"{here.seconds:.1f} s", "", True),
        (f"  answer {plan['answer']}, replications run", f"{plan['replications_run']:,}", "", True),
    ]
    name = "  the same plan, local Dask cluster of 2 workers / --jobs 2"
    try:
        import distributed  # noqa: F401
    except ImportError:
        return [*rows, (name, "skipped", "pip install '.[dask]'", True)]
    with dask_cluster(2) as address:
        there = measure([*argv, "--cluster", address])
    if there.summary["plan"]["candidates"] != plan["candidates"]:
        raise SystemExit("benchmark: the plan on the Dask cluster is not the plan here")
    ratio = there.seconds / here.seconds
    return [*rows, (name, f"{ratio:.2f}", "(info)", True)]


@contextlib.contextmanager
def dask_cluster(workers: int):
    """Dask's own scheduler and `workers` single-threaded workers on this machine; yields its address."""
    from distributed import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port)]
    procs = [subprocess.Popen([*scheduler, "--no-dashboard"], **quiet)]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"]
    procs += [subprocess.Popen([*worker, "--host", "127.0.0.1", "--no-nanny"], **quiet) for _ in range(workers)]
    try:
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def redis_missing() -> str | None:
    """Why the Redis rows cannot run here, or None if they can."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "pip install '.[redis]'"
    return None if shutil.which("redis-server") else "no redis-server"


@contextlib.contextmanager
def redis_server():
    """A redis-server of the benchmark's own on a free port, answering; yields its URL."""
    import redis

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()


def redis_backend(runs: int, messages: int) -> list[Row]:
    """2 workers on this machine, one zero-wait sender each, against the
    multiprocessing backend with 2 senders; and Redis's own memory."""
    name = f"Redis backend, zero wait, 2 workers, {messages:,} msgs"
    missing = redis_missing()
    if missing:
        return [(name, "skipped", missing, True)]
    import redis

    with redis_server() as url:
        client = redis.Redis.from_url(url)
        idle_memory = client.info("memory")["used_memory"]
        ours, local, redis_peaks = [], [], []
        for _ in range(runs):
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "smsbatch", "worker", "--broker", url, "--sender", "0:0", "--once"],
                    stdout=subprocess.DEVNULL,
                )
                for _ in range(2)
            ]
            run = measure(
                sms("--broker", url, "--no-local-senders", "--messages", messages),
                watch=lambda pid: client.info("memory")["used_memory"],
            )
            for worker in workers:
                try:
                    worker.wait(5)
                except subprocess.TimeoutExpired:  # a short run can end before a worker joins it
                    worker.terminate()
                    worker.wait(10)
            ours.append(messages / run.seconds)
            redis_peaks.append(run.peak - idle_memory)
            local.append(messages / measure(sms("--messages", messages, "--sender", "0:0", "--sender", "0:0")).seconds)
    rate = statistics.median(ours)
    ratio = statistics.median(o / b for o, b in zip(ours, local, strict=False))
    growth = statistics.median(redis_peaks) / 2**20
    return [
        (name, f"{rate:,.0f} msg/s", ">= 30,000 msg/s", rate >= 30_000),
        ("  multiprocessing backend, 2 senders, same run", f"{statistics.median(local):,.0f} msg/s", "", True),
        ("  ratio Redis / multiprocessing", f"{ratio:.2f}", "(info)", True),
        ("  Redis memory at its peak, above idle", f"{growth:.1f} MB", "< 64 MB", growth < 64),
    ]


# ---- how fast a run ends when things go wrong ----
# docs/faults.md promises these end times; tests/test_faults.py and
# tests/test_broker.py run the same scenarios and check everything else about
# them (with generous timeouts that only catch a hang).

PROGRESS = re.compile(r"^\[[\d.]+s\] \d+/\d+ \([\d.]+%\) sent (\d+) failed (\d+)", re.MULTILINE)
DEAD_SENDERS_RUN = ("--messages", 5000, "--sender", "0.05:0", "--sender", "0.05:0", "--speed", 10, "--seed", 2)
STOPPED_RUN = ("--messages", 5000, "--sender", "0.5:0.1", "--sender", "0.5:0.1", "--speed", 5, "--seed", 4)


def wait_for(condition: Callable[[], object], seconds: float, what: str):
    """Poll `condition` until it is true (its value is returned); give up after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: no {what} within {seconds:g} s")
        time.sleep(0.01)


@dataclass
class Watched:
    """smsbatch started as from a terminal (a process group of its own), its
    stdout and stderr going to files in `folder`, read as they grow."""

    proc: subprocess.Popen
    folder: str

    def text(self, stream: str) -> str:
        with open(os.path.join(self.folder, stream)) as handle:
            return handle.read()

    def counted(self) -> int:
        """Messages sent or failed, by the last progress line so far."""
        found = PROGRESS.findall(self.text("err"))
        return int(found[-1][0]) + int(found[-1][1]) if found else 0

    def senders(self) -> list[int]:
        """The run's sender processes, found by their titles."""
        return [pid for pid in descendants(self.proc.pid) if title_of(pid).startswith("smsbatch: sender")]

    def exit_seconds(self, since: float, status: int) -> float:
        """Real seconds from `since` to its exit, which must be with `status`."""
        self.proc.wait(60)
        seconds = time.monotonic() - since
        if self.proc.returncode != status:
            raise SystemExit(f"benchmark: exit {self.proc.returncode}, not {status}:\n{self.text('err')[-2000:]}")
        return seconds


@contextlib.contextmanager
def started(*argv):
    """Watched smsbatch (`--interval 0.1` for a run); its group is killed on the way out."""
    extra = () if argv[0] == "worker" else ("--interval", "0.1")
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "out"), "w") as out, open(os.path.join(folder, "err"), "w") as err:
            command = [sys.executable, "-m", "smsbatch", *map(str, argv), *extra]
            proc = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
        try:
            yield Watched(proc, folder)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def title_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def under_way(run: Watched, senders: int) -> list[int]:
    """Wait for the run's senders and its first messages; returns the senders' pids."""
    pids = wait_for(lambda: len(run.senders()) >= senders and run.senders(), 20, "senders")
    wait_for(run.counted, 20, "progress")
    return pids


def every_sender_killed() -> float:
    """Both senders SIGKILLed mid-run: seconds from the kill to the run's exit (1)."""
    with started(*DEAD_SENDERS_RUN) as run:
        senders = under_way(run, 2)
        killed = time.monotonic()
        for pid in senders:
            os.kill(pid, signal.SIGKILL)
        return run.exit_seconds(killed, status=1)


def stopped_by(signum: int, times: int) -> float:
    """Ctrl-C (or SIGTERM) to the run's process group, once (warm stop) or twice
    50 ms apart (cold): seconds from the first signal to the run's exit."""
    with started(*STOPPED_RUN) as run:
        under_way(run, 2)
        sent_at = time.monotonic()
        for _ in range(times):
            os.killpg(run.proc.pid, signum)
            time.sleep(0.05)  # two presses of Ctrl-C, 50 ms apart
        return run.exit_seconds(sent_at, status=128 + signum)


def worker_left(url: str) -> float:
    """A --once worker in a run whose coordinator (with --broker-timeout 1) is
    killed with its group: seconds from then to the worker's exit. The run's
    keys expire 1 + 5 s after their last renewal, and the worker's senders
    see the run gone at their next beat."""
    coordinator = ("--broker", url, "--messages", 5000, "--sender", "0.5:0", "--broker-timeout", 1, "--seed", 13)
    with (
        started("worker", "--broker", url, "--sender", "0.5:0", "--once") as worker,
        started(*coordinator, "--speed", 10, "--no-progress", "--claim-after", 1) as run,
    ):
        wait_for(lambda: "joined run" in worker.text("out"), 20, "worker joining")
        wait_for(lambda: len(descendants(worker.proc.pid)) >= 1, 20, "worker's sender")
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait(10)
        return worker.exit_seconds(time.monotonic(), status=0)


def run_ends(repeats: int) -> list[Row]:
    """The end times docs/faults.md promises, each the worst of `repeats` runs (or more)."""
    dead = max(every_sender_killed() for _ in range(repeats))
    warm = max(stopped_by(signum, 1) for signum in (signal.SIGINT, signal.SIGTERM) for _ in range(repeats))
    cold = max(stopped_by(signal.SIGINT, 2) for _ in range(repeats))
    return [
        (f"every sender killed: kill to exit, worst of {repeats}", f"{dead:.2f} s", "< 2 s", dead < 2),
        (f"warm stop (Ctrl-C or SIGTERM): to exit, worst of {2 * repeats}", f"{warm:.2f} s", "< 3 s", warm < 3),
        (f"cold stop (Ctrl-C twice): to exit, worst of {repeats}", f"{cold:.2f} s", "< 3 s", cold < 3),
    ]


def worker_leaves(repeats: int) -> list[Row]:
    name = f"Redis: coordinator killed, worker gone, worst of {repeats}"
    missing = redis_missing()
    if missing:
        return [(name, "skipped", missing, True)]
    with redis_server() as url:
        seconds = max(worker_left(url) for _ in range(repeats))
    return [(name, f"{seconds:.2f} s", "< 10 s", seconds < 10)]


def sections(quick: bool, runs: int) -> dict[str, Callable[[], list[Row]]]:
    """Every section of the table, by the name --only takes, in the order printed."""
    q = quick
    return {
        "throughput": lambda: throughput(runs, 5_000 if q else 1_000_000, 1_000 if q else 200_000),
        "scheduling": lambda: scheduling(runs, 0.2 if q else 6.0, quick=q),
        "memory": lambda: memory(runs, 10_000, 20_000 if q else 1_000_000),
        "startup": lambda: startup(runs),
        "window": lambda: window(runs, 1_000 if q else 100_000, 1_000 if q else 10_000, 10.0 if q else 1.0),
        "rate": lambda: rate_limit(runs, 500 if q else 50_000, 5000),
        "redis": lambda: redis_backend(runs, 20_000 if q else 1_000_000),
        "virtual-speed": lambda: virtual_speed(runs, 5_000 if q else 200_000),
        "virtual-fast": lambda: virtual_fast(runs, 5_000 if q else 1_000_000),
        "virtual-memory": lambda: virtual_memory(100_000 if q else 1_000_000, 200_000 if q else 10_000_000),
        # (quick: memory at sizes past the fast path's chunk, where it is flat: below it, a chunk grows with them)
        "gateways": lambda: gateways_speed(
            runs, 20_000 if q else 200_000, 160_000 if q else 200_000, 240_000 if q else 1_000_000
        ),
        "speeds": lambda: answer_by_speed(2_000 if q else 200_000, ("100", "1000") if q else ("100", "1000", "10000")),
        "replications": lambda: replications(runs, 2 if q else 8, 5_000 if q else 1_000_000),
        "plan": lambda: planning(1_000 if q else 1_000_000, 6.0 if q else 600.0, 0.5 if q else 0.95),
        "faithful": lambda: faithful_share(1 if q else 10, 2_000 if q else 20_000, 100 if q else 1_000),
        "run-ends": lambda: run_ends(1 if q else 2),
        "worker-leaves": lambda: worker_leaves(1 if q else 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each (a smoke test)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"these sections only: {', '.join(sections(True, 1))}")
    args = parser.parse_args()
    runs = 1 if args.quick else max(3, args.runs)
    chosen = sections(args.quick, runs)
    if args.only:
        names = args.only.split(",")
        unknown = [name for name in names if name not in chosen]
        if unknown:
            parser.error(f"--only: no section {', '.join(unknown)}; the sections are {', '.join(chosen)}")
        chosen = {name: section for name, section in chosen.items() if name in names}
    print(
        f"smsbatch benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{'quick' if args.quick else f'median of {runs} runs'}",
        flush=True,
    )
    rows: list[Row] = []
    width = 62
    print(f"{'figure':<{width}} {'measured':>24} {'target':>18}  holds")
    for section in chosen.values():
        for row in section():
            rows.append(row)
            name, value, target, holds = row
            mark = "" if not target or target == "(info)" else ("yes" if holds else "NO")
            print(f"{name:<{width}} {value:>24} {target:>18}  {mark}", flush=True)
    missed = [row[0] for row in rows if not row[3]]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} hold" + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 0 if args.quick or not missed else 1


if __name__ == "__main__":
    sys.exit(main())
