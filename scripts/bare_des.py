"""The yardstick for `--speed max`: the model, written the obvious way.

One heap of (time, seq, ...) events, a deque for the queue, random.lognormvariate
per send, no statistics at all: what anyone would write first. smsbatch's
virtual-time engine must run at least 0.8 as fast while it keeps its
statistics (scripts/benchmark.py measures both side by side).

    python scripts/bare_des.py MESSAGES [SEED] [MODEL]

MODEL is `emergency` (configs/emergency.ini's senders, the default) or `four`
(the four-sender set of docs/model.md and the benchmark: 0.3:0.03:window=10,
0.8:0.06:window=30:rate=20, 2:0.1:window=50, 5:0.2, one retry, backoff 1 s).

Prints one line of JSON: messages, simulated makespan, and the seconds the
loop took (start-up excluded).
"""

import heapq
import json
import math
import random
import sys
import time
from collections import deque

# (mean, fail rate, window, rate) of each sender, max retries, retry backoff
MODELS = {
    "emergency": ([(0.2, 0.02, 20, 0), (0.5, 0.05, 20, 25), (1.5, 0.12, 40, 0), (3.0, 0.1, 1, 0)], 2, 2.0),
    "four": ([(0.3, 0.03, 10, 0), (0.8, 0.06, 30, 20), (2.0, 0.1, 50, 0), (5.0, 0.2, 1, 0)], 1, 1.0),
}
SENDERS, MAX_RETRIES, BACKOFF = MODELS["emergency"]
SPREAD = 0.5


def simulate(messages: int, seed: int) -> float:
    rng = random.Random(seed)
    sigma = math.sqrt(math.log1p(SPREAD * SPREAD))
    queue = deque((i, 1) for i in range(messages))
    heap = []  # (time, seq, kind, sender, message, attempt)
    seq = 0
    next_start = [0.0] * len(SENDERS)
    for s, (_, _, window, _) in enumerate(SENDERS):
        for _ in range(window):
            seq += 1
            heap.append((0.0, seq, "free", s, None, 0))
    heapq.heapify(heap)
    idle = []  # senders' slots waiting for work
    last = 0.0
    while heap:
        t, _, kind, s, message, attempt = heapq.heappop(heap)
        mean, fail_rate, _, rate = SENDERS[s]
        if kind == "done":
            last = t
            if rng.random() < fail_rate and attempt <= MAX_RETRIES:
                seq += 1
                delay = BACKOFF * 2 ** (attempt - 1) * rng.uniform(0.5, 1.5)
                heapq.heappush(heap, (t + delay, seq, "retry", s, message, attempt + 1))
            kind = "free"
        if kind == "retry":
            queue.append((message, attempt))
            for slot_sender in idle:
                seq += 1
                heapq.heappush(heap, (t, seq, "free", slot_sender, None, 0))
            idle.clear()
            continue
        if not queue:
            idle.append(s)
            continue
        if rate and next_start[s] > t:
            seq += 1
            heapq.heappush(heap, (next_start[s], seq, "free", s, None, 0))
            continue
        message, attempt = queue.popleft()
        if rate:
            next_start[s] = t + 1.0 / rate
        seconds = rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)
        seq += 1
        heapq.heappush(heap, (t + seconds, seq, "done", s, message, attempt))
    return last


def main() -> None:
    global SENDERS, MAX_RETRIES, BACKOFF
    messages = int(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    SENDERS, MAX_RETRIES, BACKOFF = MODELS[sys.argv[3] if len(sys.argv) > 3 else "emergency"]
    started = time.perf_counter()
    makespan = simulate(messages, seed)
    seconds = time.perf_counter() - started
    print(json.dumps({"messages": messages, "sim_elapsed_s": makespan, "loop_s": seconds}))


if __name__ == "__main__":
    main()
