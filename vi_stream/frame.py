"""What enters (Frame) and what leaves (Result) the pipeline."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
