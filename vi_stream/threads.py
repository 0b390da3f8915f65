"""Splitting a range among numba threads (shared by the pixel and search kernels)."""
from __future__ import annotations

import numba


@numba.njit(cache=True, inline="always")
def share(th, nt, n):  # pragma: no cover - compiled
    """Thread ``th``'s contiguous share [lo, hi) of range(n) split among ``nt`` threads (for
    kernels that keep scratch arrays or partial sums per thread rather than per item)."""
    chunk = (n + nt - 1) // nt
    return th * chunk, min(n, (th + 1) * chunk)
