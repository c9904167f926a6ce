"""The names and times of a run in Redis: its keys, its states, who is who.

Keys of run R (every key carries the run id, so runs on one Redis never mix):

    smsbatch:runs          sorted set of runs in progress (workers look here)
    smsbatch:R:state       running | stopping | done (gone: the run is over)
    smsbatch:R:info        the run's settings, as JSON, for workers
    smsbatch:R:work        stream of batches, consumer group "senders"
    smsbatch:R:results     stream of sender reports, read by the coordinator
    smsbatch:R:start       simulated time 0, as wall-clock seconds since the epoch
"""

from __future__ import annotations

import math
import os
import secrets
import socket

RUNS_KEY = "smsbatch:runs"
GROUP = "senders"
RUNNING, STOPPING, DONE = "running", "stopping", "done"
# A sender speaks, renews its claims and reads the run state this often (or
# four times per --claim-after, if that is shorter), so a live sender is never
# taken for a silent one. The coordinator renews the run's keys as often.
BEAT_SECONDS = 1.0
ENDED_TTL = 60  # seconds they live once the run is over: workers see "done", then they go
# While a run lasts, the coordinator renews its keys every second to live this
# much longer than its own --broker-timeout: if it dies (or loses Redis and
# gives up), the keys expire soon after, and every sender sees the run is over.
KEY_TTL_MARGIN = 5


class RunKeys:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        base = f"smsbatch:{run_id}"
        self.state = f"{base}:state"
        self.info = f"{base}:info"
        self.work = f"{base}:work"
        self.results = f"{base}:results"
        self.start = f"{base}:start"  # simulated time 0, as wall-clock seconds since the epoch

    def all(self) -> tuple[str, ...]:
        return (self.state, self.info, self.work, self.results, self.start)


def new_run_id() -> str:
    return secrets.token_hex(4)


def run_ttl(broker_timeout: float) -> int:
    """Seconds a running run's keys live unless the coordinator renews them."""
    return math.ceil(broker_timeout) + KEY_TTL_MARGIN


def process_label() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def consumer_name(index: int) -> str:
    """A sender's name in the consumer group: unique across machines and runs."""
    return f"{process_label()}/{index + 1}"
