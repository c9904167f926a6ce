"""The C heap, told to keep what the fast path frees (glibc's malloc).

A chunk of virtual/fast.py makes dozens of arrays of a megabyte and frees
them; glibc maps each such block afresh (above its mmap threshold) or hands
the top of its heap back to the system (above its trim threshold), so every
chunk faults its pages in again: 220,000 page faults in a 10M-message run,
a quarter of its time. With both thresholds raised the freed blocks are
reused: 19,000 faults, the same peak. The figures are untouched (only where
numpy's arrays live changes); elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 128 << 20  # blocks above this are still mapped alone: a run's arrays never are
_TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept up to this (the run's peak stays its peak)
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's thresholds, once a process: True if they are raised."""
    global _kept
    if _kept is None:
        _kept = _raise_thresholds()
    return _kept


def _raise_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):  # (musl has no mallopt to speak of)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
