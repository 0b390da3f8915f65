"""What enters (Frame) and what leaves (Result) the pipeline, and the rule for the module name a frame carries."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vi_stream.errors import InputError


@dataclass
class Frame:
    image: np.ndarray
    pulse_id: int
    sec: int = 0
    ns: int = 0
    module: str = "unknown"
    side: str = "left"
    passthrough: Any = None          # input channels to forward unchanged (codec Message) or None
    tag: str = ""                    # free text for the store's side document (<PREFIX>:TAG)
    received_at: float = field(default_factory=time.monotonic)

    @property
    def timestamp(self) -> float:
        return self.sec + self.ns * 1e-9


@dataclass
class Result:
    frame: Frame
    image: np.ndarray                 # the ROI image that was scored
    heatmap: np.ndarray               # float32, ROI shape
    mask: np.ndarray                  # uint8 0/1, ROI shape
    score: float
    is_anomalous: bool
    defects: list[dict]
    parameters: dict                  # ROI, thresholds, tiling, model id
    timings: dict


MODULE_MAX = 256              # characters of a module name


def check_module(name) -> str:
    """A module name the store can file and REST reach (``/api/modules/<name>``, a staging file name):
    1-256 printable characters, none of them '/' or '\\', no space at either end, not '.' or '..'.
    Raises InputError (one line) otherwise."""
    if not isinstance(name, str) or not name:
        raise InputError(f"a module name is 1-{MODULE_MAX} characters, got {name!r}")
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    if len(name) > MODULE_MAX:
        raise InputError(f"module name of {len(name)} characters (at most {MODULE_MAX}): {shown}")
    if "\ufffd" in name:     # what a decoder puts for bytes that are not UTF-8: two names would read alike
        raise InputError(f"module name {shown} is not valid UTF-8")
    if name in (".", "..") or name != name.strip() or any(c in "/\\" or not c.isprintable() for c in name):
        raise InputError(f"module name {shown} cannot be filed: no '/', '\\', control characters or spaces "
                         "at its ends, and not '.' or '..'")
    return name
