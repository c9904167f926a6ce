"""--cluster tcp://HOST:8786: replications on a Dask cluster, not a pool here.

The scheduler and its workers are Dask's own (`dask scheduler`, `dask worker
tcp://HOST:8786`, on machines with smsbatch installed); smsbatch is only a
client. A replication is the same function with the same arguments as in the
pool (replications.run_one, its seed from --seed and its number), so its
figures are the same to the bit wherever it runs; a worker that dies costs
only the replications it held, which the scheduler gives to another.

Imported only with --cluster (pip install 'smsbatch[dask]'): without it,
nothing imports Dask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from smsbatch.core.errors import UsageError


def connect(address: str, timeout: float) -> Any:
    """A Dask client of the scheduler at `address`; bad input (one line) when
    Dask is missing or no scheduler answers within `timeout` seconds."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("argument --cluster: needs Dask: pip install 'smsbatch[dask]'") from None
    try:
        return Client(address, timeout=max(timeout, 0.5), set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(
            f"argument --cluster: no Dask scheduler answers at {address} within {timeout:g}s"
            f" (--broker-timeout): {reason[:120]}"
        ) from None


class ClusterPool:
    """What the Replicator asks of a pool (submit, wait, shutdown), done by Dask."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, function: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(function, *args, pure=False)  # each replication once, even if two are alike

    def wait(self, futures: Iterable[Any], timeout: float) -> set[Any]:
        """The futures that are done, once one is (empty after `timeout` seconds with none)."""
        waiting = list(futures)
        deadline = time.monotonic() + timeout
        while True:
            done = {future for future in waiting if future.done()}
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.005)

    def stop(self) -> None:
        """Nothing to stop warmly: the cluster's running replications are dropped."""

    def shutdown(self, futures: Iterable[Any] = ()) -> None:
        for future in futures:
            future.cancel()
        self.client.close()

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))
