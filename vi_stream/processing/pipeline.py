"""Frame -> Result: pure computation (no sockets, no threads, no database)."""
from __future__ import annotations

from vi_stream.processing import roi as roi_mod
from vi_stream._version import __version__
from vi_stream.frame import Frame, Result
from vi_stream.model import AnomalyModel
from vi_stream.processing.settings import Settings  # noqa: F401 - the pipeline's input, re-exported


class Pipeline:
    def __init__(self, model: AnomalyModel, version: str | None = None):
        """``version``: the model's registry name ``name@X.Y`` (None for a plain model file)."""
        self.model, self.version = model, version

    def process(self, frame: Frame, settings: Settings) -> Result:
        image = roi_mod.crop(frame.image, settings.roi)
        r = self.model.score(image, settings.threshold)
        cfg = self.model.config
        params = {
            "roi": settings.roi or [],
            "threshold": r.threshold,
            "model_threshold": self.model.threshold,
            "tile": cfg.tile, "overlap": cfg.overlap, "zoom": cfg.zoom,
            "model_id": self.model.model_id,
            "model_version": self.version,
            "vi_stream_version": __version__,
            "image_shape": list(image.shape),
            "lattice": r.lattice,   # the image's lattice and whether its score was fused in (model/lattice.py)
        }
        return Result(frame, image, r.heatmap, r.mask, r.score, r.is_anomalous, r.defects, params, r.timings)
