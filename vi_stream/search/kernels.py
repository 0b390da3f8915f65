"""Which list kernels the search and the CPU head use: the LLVM IR ones, or plain numba loops.

``VI_STREAM_SEARCH_KERNELS=ir|numba`` chooses; unset, the IR kernels are used when this numba
is in the range they were tested with (``TESTED_NUMBA``) and has the internals they build on,
else the plain loops, with a warning. The choice is made once, when the package is imported.
(Numba caches compiled functions per source file, not per choice: a process forcing the
other kernels should use its own ``NUMBA_CACHE_DIR``, as the tests do.)
"""
from __future__ import annotations

import logging
import os

import numba

from vi_stream.search.layout import LIST_WIDTH  # noqa: F401 - the kernels' vector width, for their callers

TESTED_NUMBA = ((0, 58), (0, 68))   # inclusive (major, minor) range the IR kernels were tested on


def _ir_usable() -> str | None:
    """None if the IR kernels can be built here, else why not."""
    version = tuple(int(x) for x in numba.__version__.split(".")[:2])
    if not TESTED_NUMBA[0] <= version <= TESTED_NUMBA[1]:
        return f"numba {numba.__version__} is outside the tested range"
    try:
        import llvmlite.ir as ir
        from numba.core import cgutils
        from numba.extending import intrinsic  # noqa: F401
        for name in ("alloca_once", "alloca_once_value", "for_range"):
            getattr(cgutils, name)
        ir.HalfType()
    except (ImportError, AttributeError) as err:
        return f"numba internals changed ({err})"
    return None


def _choose() -> str:
    want = os.environ.get("VI_STREAM_SEARCH_KERNELS", "").strip().lower()
    if want in ("ir", "numba"):
        return want
    if want:
        raise ValueError(f"VI_STREAM_SEARCH_KERNELS must be 'ir' or 'numba', got {want!r}")
    why = _ir_usable()
    if why:
        logging.getLogger("vi_stream.search").warning("search kernels: plain numba loops (%s); "
                                                      "about half the speed of the IR kernels", why)
        return "numba"
    return "ir"


BACKEND = _choose()

if BACKEND == "ir":
    from vi_stream.search.ir_kernels import distances_of_four, min_of_four, nearest_of_four, project_four
else:
    from vi_stream.search.plain import distances_of_four, min_of_four, nearest_of_four, project_four

__all__ = ["BACKEND", "LIST_WIDTH", "distances_of_four", "min_of_four", "nearest_of_four", "project_four"]
