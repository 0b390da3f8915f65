"""The unsupervised anomaly model (fit on good images, score any image)."""
from .anomaly import AnomalyModel, ModelConfig, ScoreResult
from .modelfile import load, read_meta, save

__all__ = ["AnomalyModel", "ModelConfig", "ScoreResult", "load", "read_meta", "save"]
