"""Threads: splitting a range among numba threads (pixel and search kernels), and the priority of
the helper threads (store writer, live monitor) that must leave the CPU to scoring."""
from __future__ import annotations

import os
import threading

from vi_stream.folders import ensure_numba_cache

ensure_numba_cache()   # before numba decorates a kernel: an install it cannot write to (vi_stream.folders)

import numba  # noqa: E402


@numba.njit(cache=True, inline="always")
def share(th, nt, n):  # pragma: no cover - compiled
    """Thread ``th``'s contiguous share [lo, hi) of range(n) split among ``nt`` threads (for
    kernels that keep scratch arrays or partial sums per thread rather than per item)."""
    chunk = (n + nt - 1) // nt
    return th * chunk, min(n, (th + 1) * chunk)


def lower_priority(nice: int) -> None:
    """Let scoring win the CPU: the calling thread runs ``nice`` steps lower (Linux: per thread).

    The store writer's PNG encoding and the live monitor's previews only need the CPU that
    processing leaves idle; on a 2-core machine this keeps their cost to processing small
    (bench/store.py, bench/ui.py).
    """
    if nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not allowed
        pass
