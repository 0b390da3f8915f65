"""Frame -> Result: pure computation (no sockets, no threads, no database)."""
from __future__ import annotations

from dataclasses import dataclass

from . import roi as roi_mod
from .frame import Frame, Result
from .model import AnomalyModel


@dataclass(frozen=True)
class Settings:
    """What REST may change between frames (never mid-frame: a frame uses one Settings)."""

    roi: list[int] | None = None
    threshold: float | None = None   # None: the model's own threshold


class Pipeline:
    def __init__(self, model: AnomalyModel):
        self.model = model

    def process(self, frame: Frame, settings: Settings) -> Result:
        image = roi_mod.crop(frame.image, settings.roi)
        r = self.model.score(image, settings.threshold)
        cfg = self.model.config
        params = {
            "roi": settings.roi or [],
            "threshold": r.threshold,
            "model_threshold": self.model.threshold,
            "tile": cfg.tile, "overlap": cfg.overlap,
            "model_id": self.model.model_id,
            "image_shape": list(image.shape),
        }
        return Result(frame, image, r.heatmap, r.mask, r.score, r.is_anomalous, r.defects, params, r.timings)
