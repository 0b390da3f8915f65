"""The unsupervised anomaly model: fitted on good images only, it scores any image.

Owns tiling (:mod:`.tiling`), the backbone and its features, the CPU head, the bank and its search
(with :mod:`vi_stream.search`), the threshold's statistics, post-processing of a heatmap into a mask
and defects plus the colour maps and overlays that show it (:mod:`.postprocess`), the model file and
its self-check. May import the base modules and ``search``; nothing of the daemon, the store or the
web: the model knows nothing of where images come from or go.
"""
from vi_stream.folders import ensure_numba_cache

ensure_numba_cache()   # before any kernel module: an install numba cannot write to (vi_stream.folders)

from vi_stream.model.config import ModelConfig  # noqa: E402

__all__ = ["AnomalyModel", "ModelConfig", "ScoreResult", "load", "read_meta", "save"]


# Lazy: importing one module of the package (the store's record takes postprocess, the command line
# ModelConfig) must not import torch with the scorer; the first use of these names does.
def __getattr__(name: str):
    if name in ("AnomalyModel", "ScoreResult"):
        from vi_stream.model import anomaly as module
    elif name in ("load", "read_meta", "save"):
        from vi_stream.model import modelfile as module
    else:
        raise AttributeError(f"module 'vi_stream.model' has no attribute {name!r}")
    return getattr(module, name)
