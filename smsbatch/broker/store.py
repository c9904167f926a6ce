"""Every Redis command smsbatch issues, named for what it does.

    producer --add_work--> work --read_work / reclaim--> sender (here, or in any worker)
                                                          | write_results: results + XACK
                                                          v   + XDEL work, in one MULTI
    coordinator <--read_results-- results       (trim_results: what it has read)

Delivery is at least once: a sender acknowledges a batch only after its
results are written, and a batch that a silent sender holds longer than
--claim-after is taken over by a live one (reclaim: XAUTOCLAIM). A live
sender renews its claims every beat (XCLAIM ... JUSTID with idle 0), so a slow
send never looks like a dead sender. The coordinator counts each message id once.

Every command goes through the Patient (an outage is waited out, then
BrokerDown); one on a stream whose consumer group is gone raises RunGone.
Fields in and out are the wire format of codec.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import redis

from smsbatch.broker.codec import Opened, report_fields
from smsbatch.broker.keys import DONE, ENDED_TTL, GROUP, RUNNING, RUNS_KEY, RunKeys
from smsbatch.broker.patient import Patient, RunGone

READ_COUNT = 1000  # result entries per XREAD

Entry = tuple[bytes, dict]  # (entry id, fields) of a stream entry


class RunStore:
    """One run's keys in Redis, through a Patient. A store made with no keys
    serves only the list of runs in progress (a worker looking for a run)."""

    def __init__(self, client: redis.Redis, keys: RunKeys | None, patient: Patient) -> None:
        self.client = client
        self._keys = keys
        self.patient = patient

    @property
    def keys(self) -> RunKeys:
        if self._keys is None:
            raise TypeError("this store serves no run: use for_run()")
        return self._keys

    def for_run(self, run_id: str) -> RunStore:
        """The same connection, for run `run_id`."""
        return RunStore(self.client, RunKeys(run_id), self.patient)

    def _call(self, call: Callable, *args, **kwargs):
        try:
            return self.patient(call, *args, **kwargs)
        except redis.ResponseError as error:
            # NOGROUP: the stream is gone; UNBLOCKED: it went while a read waited on it
            # (Redis 7 wakes a blocked XREADGROUP when its key expires or is deleted).
            if "NOGROUP" in str(error) or "UNBLOCKED" in str(error):
                raise RunGone("the run's work stream is gone from Redis") from None
            raise

    # ---- the run: made, kept alive and ended by the coordinator ----

    def create_run(self, info: str, ttl: int) -> None:
        self._call(self._create_run, info, ttl)

    def _create_run(self, info: str, ttl: int) -> None:
        keys = self.keys
        opened: dict = report_fields(Opened())  # the first entry: the results stream exists from the start
        pipe = self.client.pipeline(transaction=True)  # made here: a failed pipeline is emptied
        pipe.set(keys.state, RUNNING, ex=ttl)
        pipe.set(keys.info, info, ex=ttl)
        pipe.xgroup_create(keys.work, GROUP, id="0", mkstream=True)
        pipe.xadd(keys.results, opened)
        pipe.expire(keys.work, ttl)
        pipe.expire(keys.results, ttl)
        pipe.zadd(RUNS_KEY, {keys.run_id: time.time()})
        pipe.execute()

    def set_start(self, wall_start: float, ttl: int) -> None:
        """Simulated time 0, as wall-clock time: monotonic clocks differ between machines."""
        self._call(self.client.set, self.keys.start, repr(wall_start), ex=ttl)

    def set_state(self, state: str, ttl: int) -> None:
        self._call(self.client.set, self.keys.state, state, ex=ttl)

    def renew_keys(self, ttl: int) -> bool:
        """Keep the run's keys alive (they expire if we die); False if they are gone."""
        return self._call(self._renew_keys, ttl)

    def _renew_keys(self, ttl: int) -> bool:
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys.all():
            pipe.expire(key, ttl)
        pipe.exists(self.keys.state)
        return bool(pipe.execute()[-1])

    def end_run(self) -> None:
        """Say "done", let the keys go soon, unlist the run. Without patience:
        if Redis is gone now, the keys expire on their own anyway."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.state, DONE)
        for key in self.keys.all():
            pipe.expire(key, ENDED_TTL)
        pipe.zrem(RUNS_KEY, self.keys.run_id)
        pipe.execute()

    # ---- the run as workers and senders see it ----

    def runs_in_progress(self) -> list[str]:
        """Run ids, oldest first."""
        return [run_id.decode() for run_id in self._call(self.client.zrange, RUNS_KEY, 0, -1)]

    def unlist(self) -> None:
        """Take a run whose keys expired off the list of runs in progress."""
        self._call(self.client.zrem, RUNS_KEY, self.keys.run_id)

    def read_state(self) -> str | None:
        """RUNNING, STOPPING or DONE; None once the run's keys are gone."""
        state = self._call(self.client.get, self.keys.state)
        return None if state is None else state.decode()

    def read_info(self) -> str | None:
        info = self._call(self.client.get, self.keys.info)
        return None if info is None else info.decode()

    def read_start(self) -> float | None:
        """Simulated time 0 as wall-clock seconds; None until the coordinator sets it."""
        wall = self._call(self.client.get, self.keys.start)
        return None if wall is None else float(wall)

    # ---- the work stream ----

    def work_length(self) -> int:
        return self._call(self.client.xlen, self.keys.work)

    def add_work(self, fields: dict, make_stream: bool = False) -> bool:
        """XADD a batch (or a Stop); False if the stream is gone and `make_stream` is not set."""
        entry = self._call(self.client.xadd, self.keys.work, fields, nomkstream=not make_stream)
        return entry is not None

    def read_work(self, consumer: str, block_ms: int | None) -> Entry | None:
        """The next new entry for `consumer` (waiting up to `block_ms`), or None."""
        answer = self._call(self.client.xreadgroup, GROUP, consumer, {self.keys.work: ">"}, count=1, block=block_ms)
        if not answer:
            return None
        return answer[0][1][0]

    def reclaim(self, consumer: str, min_idle_ms: int, start: bytes | str) -> tuple[bytes | str, Entry | None]:
        """Take over one entry another consumer has held for `min_idle_ms`,
        looking from `start`: (where to look next time, the entry or None)."""
        next_start, entries = self._call(
            self.client.xautoclaim, self.keys.work, GROUP, consumer, min_idle_ms, start_id=start, count=1
        )[:2]
        for entry_id, fields in entries:
            if fields:  # an entry deleted meanwhile comes back empty
                return next_start, (entry_id, fields)
        return next_start, None

    def finish_entries(self, entries: Sequence[bytes]) -> None:
        """Acknowledge and delete entries with nothing to report (a Stop)."""
        self._call(self._settle, None, (), entries)

    def give_back(self, fields: dict, finished: Sequence[bytes]) -> None:
        """Part of a batch goes back as a new entry; `finished` entries are acknowledged in the same MULTI."""
        self._call(self._settle, None, (fields,), finished)

    # ---- the results stream ----

    def add_report(self, fields: dict) -> None:
        self._call(self.client.xadd, self.keys.results, fields, nomkstream=True)

    def write_results(self, report: dict, finished: Sequence[bytes], give_back: Iterable[dict] = ()) -> None:
        """Results first, then the acknowledgement, in one MULTI: a batch is
        never acknowledged without its results."""
        self._call(self._settle, report, tuple(give_back), finished)

    def _settle(self, report: dict | None, work: tuple[dict, ...], finished: Sequence[bytes]) -> None:
        keys = self.keys
        pipe = self.client.pipeline(transaction=True)
        if report is not None:
            pipe.xadd(keys.results, report, nomkstream=True)
        for fields in work:
            pipe.xadd(keys.work, fields, nomkstream=True)
        if finished:
            pipe.xack(keys.work, GROUP, *finished)
            pipe.xdel(keys.work, *finished)  # consumed: the stream stays short
        pipe.execute()

    def beat(self, consumer: str, held: Sequence[bytes], report: dict) -> str | None:
        """Renew `consumer`'s claims on `held`, add its beat report, and read the run's state."""
        state = self._call(self._beat, consumer, held, report)
        return None if state is None else state.decode()

    def _beat(self, consumer: str, held: Sequence[bytes], report: dict) -> bytes | None:
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        if held:
            pipe.xclaim(keys.work, GROUP, consumer, 0, list(held), idle=0, justid=True)
        pipe.xadd(keys.results, report, nomkstream=True)
        pipe.get(keys.state)
        return pipe.execute()[-1]

    def read_results(self, after: bytes | str, block_ms: int | None) -> list[Entry]:
        """Reports written after entry `after` (waiting up to `block_ms`), oldest first."""
        answer = self._call(self.client.xread, {self.keys.results: after}, count=READ_COUNT, block=block_ms)
        if not answer:
            return []
        return answer[0][1]

    def trim_results(self, upto: bytes | str) -> None:
        """Drop what was read, so the stream stays short however long the run."""
        self._call(self.client.xtrim, self.keys.results, minid=upto, approximate=False)
