"""The unsupervised anomaly model: fitted on good images only, it scores any image.

Owns tiling (:mod:`.tiling`), the backbone and its features, the CPU head, the bank and its search
(with :mod:`vi_stream.search`), the threshold's statistics, post-processing of a heatmap into a mask
and defects plus the colour maps and overlays that show it (:mod:`.postprocess`), the model file and
its self-check. May import the base modules and ``search``; nothing of the daemon, the store or the
web: the model knows nothing of where images come from or go.
"""
from vi_stream.model.anomaly import AnomalyModel, ModelConfig, ScoreResult
from vi_stream.model.modelfile import load, read_meta, save

__all__ = ["AnomalyModel", "ModelConfig", "ScoreResult", "load", "read_meta", "save"]
