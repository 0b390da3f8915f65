"""The unsupervised anomaly model (fit on good images, score any image)."""
from vi_stream.model.anomaly import AnomalyModel, ModelConfig, ScoreResult
from vi_stream.model.modelfile import load, read_meta, save

__all__ = ["AnomalyModel", "ModelConfig", "ScoreResult", "load", "read_meta", "save"]
