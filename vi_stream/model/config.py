"""The model's settings: what a fit is asked for, written into every model file.

Apart from :mod:`.anomaly` so that reading them costs no torch or numba: ``vi_stream --help`` and
``train --help`` show the defaults, and a command that scores nothing should start in well under a
second (bench/startup.py). ``validate`` imports what it checks against when called.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from vi_stream.errors import ConfigError, ModelError


MAX_FOLDS = 20    # each fold rebuilds the index's lists less its rows (model/calibration.py): fit time
MIN_CONFIDENCE, MAX_CONFIDENCE = 0.5, 0.99   # the threshold's confidence: from the median training set to
                                             # all but one in a hundred (calibration.gumbel_k)
FEATURE_STRIDE = 8  # pixels per cell of the finest feature map (a setting is checked against it without torch)
MAX_ZOOM = 3.0    # a 4096x4096 image at 3x is 150 MP through the backbone: as far as memory allows


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet-lite0"
    taps: tuple[int, ...] = (2, 4, 7)
    tile: int = 320
    overlap: int = 64
    dim: int = 144              # dimensions kept (144 = all of the three taps: a rotation, nothing dropped)
    bank_size: int = 120_000    # reservoir of normal patches (bounds fit memory)
    cells: int = 1024           # k-means cells of the index
    nprobe: int = 4             # cells searched per refined patch
    gate_fraction: float = 0.5  # refine patches above this fraction of the threshold
    smooth_sigma: float = 6.0   # px, Gaussian smoothing of the map (chosen on the tuning families: bench/history.md)
    min_defect_area: int = 16   # px
    batch_size: int = 16        # tiles per backbone call at most (on CPU also bounded by CPU_CALL_PIXELS)
    # The threshold from every good image's score against the bank less its own fold's patches (one in
    # this many images per fold; model/calibration.py); 0: hold out every calibration_every-th image
    # (at most max_calibration) from the bank instead, as before.
    calibration_folds: int = 5
    calibration_every: int = 5
    max_calibration: int = 16
    false_alarm_one_in: int = 20   # threshold: at most one false alarm per this many good images ...
    false_alarm_confidence: float = 0.9   # ... for this share of training sets (0: on average; calibration.py)
    seed: int = 0
    # The lattice score (model/lattice.py): each pixel against the same place in its lattice
    # neighbours, fused with the kNN map by a pixelwise maximum at a gain fitted on the good images.
    lattice: bool = True
    lattice_weight: float = 1.0   # each lattice map's good-image maxima (90th percentile) as a share of the
                                  # kNN map's (median): lattice.calibrate
    lattice_spread: bool = True   # each lattice map but "moved" over its spread on the good images at places
                                  # that look alike (model/lattice_spread.py)
    # The image is enlarged this many times before the backbone sees it (its map is brought back to
    # the image's size), at the square of the cost; the lattice score reads the image at its own size.
    # Experimental: thin cuts were found better on the tuning line, not on the sealed lines (docs/model.md).
    zoom: float = 1.0

    def validate(self) -> "ModelConfig":
        # Here, not at the top: the command line reads the defaults for its help without numba or torch.
        from vi_stream.model import filecheck
        from vi_stream.model.tiling import check_tiling
        check_tiling(self.tile, self.overlap)
        if self.tile % (2 * FEATURE_STRIDE) or self.overlap % FEATURE_STRIDE:
            raise ConfigError(f"tile must be a multiple of {2 * FEATURE_STRIDE} and overlap of {FEATURE_STRIDE}, "
                              f"got tile={self.tile} overlap={self.overlap}")
        # every file a fit writes must load
        filecheck.check_sizes(self.tile, self.taps, self.bank_size, self.cells, self.dim)
        for name, lo in (("dim", 1), ("bank_size", 100), ("cells", 1), ("nprobe", 1), ("batch_size", 1),
                         ("calibration_every", 2), ("max_calibration", 1), ("min_defect_area", 1),
                         ("false_alarm_one_in", 2)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not 0.0 <= self.gate_fraction <= 1.0:
            raise ConfigError(f"gate_fraction must be in [0, 1], got {self.gate_fraction}")
        if not isinstance(self.lattice, bool):
            raise ConfigError(f"lattice must be true or false, got {self.lattice!r}")
        if not isinstance(self.lattice_spread, bool):
            raise ConfigError(f"lattice_spread must be true or false, got {self.lattice_spread!r}")
        if isinstance(self.zoom, bool) or not isinstance(self.zoom, (int, float)) or not 1 <= self.zoom <= MAX_ZOOM:
            raise ConfigError(f"zoom must be a number from 1 to {MAX_ZOOM:g}, got {self.zoom!r}")
        if not valid_confidence(self.false_alarm_confidence):
            raise ConfigError(f"false_alarm_confidence must be 0 (the target on average) or a number from "
                              f"{MIN_CONFIDENCE} to {MAX_CONFIDENCE}, got {self.false_alarm_confidence!r}")
        if not valid_folds(self.calibration_folds):
            raise ConfigError(f"calibration_folds must be 0 (held-out images) or an integer from 2 to {MAX_FOLDS}, "
                              f"got {self.calibration_folds!r}")
        if not (isinstance(self.lattice_weight, (int, float)) and 0 < self.lattice_weight <= 10):
            raise ConfigError(f"lattice_weight must be in (0, 10], got {self.lattice_weight!r}")
        if not self.smooth_sigma >= 0:
            raise ConfigError(f"smooth_sigma must be >= 0, got {self.smooth_sigma}")
        return self


def valid_folds(folds) -> bool:
    """Whether ``folds`` is a calibration_folds setting: 0 (held out) or an integer from 2 to MAX_FOLDS."""
    return not isinstance(folds, bool) and isinstance(folds, int) and (folds == 0 or 2 <= folds <= MAX_FOLDS)


def valid_confidence(c) -> bool:
    """Whether ``c`` is a false_alarm_confidence setting: 0 (the target on average over training sets)
    or a share from MIN_CONFIDENCE to MAX_CONFIDENCE."""
    return not isinstance(c, bool) and isinstance(c, (int, float)) and (c == 0 or MIN_CONFIDENCE <= c <= MAX_CONFIDENCE)


# ModelConfig fields a model file keeps in threshold_rule (under these keys), not in its config
RULE_SETTINGS = {"calibration_folds": ("folds", valid_folds),
                 "false_alarm_confidence": ("confidence", valid_confidence)}


def rule_record(config: ModelConfig) -> dict:
    """Those settings as a fit writes them into its ``threshold_rule`` (``rule_settings`` reads them)."""
    return {key: getattr(config, field) for field, (key, _valid) in RULE_SETTINGS.items()}


def rule_settings(rule: dict) -> dict:
    """The settings a model file keeps in its ``threshold_rule``, not in its config (they act at the fit
    only, and a vi_stream from before them, a worker not yet upgraded, refuses settings it does not
    know), from that rule: absent (a file from before them) or not valid here (a future vi_stream's),
    what their absence meant: held-out images, the target on average. A fit's provenance, so such a
    file still loads."""
    out = {}
    for field, (key, valid) in RULE_SETTINGS.items():
        v = (rule or {}).get(key, 0)
        out[field] = v if valid(v) else 0
    return out


def saved_settings(config: dict, version: str = "?") -> ModelConfig:
    """The settings of a config as a model file (or a benchmark's record of one) keeps it, not yet
    validated. A setting it leaves out takes what its absence meant when written: the lattice score
    off (files from before it, and files with it off, name no lattice), its maps read as they are
    (lattice_spread off: files from before it), the threshold from held-out
    images (calibration_folds 0) for the target on average (false_alarm_confidence 0), every other its
    default."""
    c = dict(config)
    c["taps"] = tuple(c["taps"])
    c.setdefault("lattice", False)
    # files from before it read their maps as they are; with the lattice off it is moot, and left out
    c.setdefault("lattice_spread", False if c["lattice"] else ModelConfig().lattice_spread)
    for field in RULE_SETTINGS:             # files name these in threshold_rule (config_from_meta)
        c.setdefault(field, 0)
    unknown = sorted(set(c) - set(ModelConfig.__dataclass_fields__))
    if unknown:
        raise ModelError(f"model was written by a newer vi_stream ({version}: "
                         f"unknown settings {', '.join(unknown)}); upgrade vi_stream or refit")
    return replace(ModelConfig(), **c)


def config_from_meta(meta: dict) -> ModelConfig:
    """A model file's settings, checked (the file's threshold stands whatever the defaults are now)."""
    try:
        config = {**rule_settings(meta.get("threshold_rule")), **meta["config"]}
        return saved_settings(config, meta.get("vi_stream_version", "?")).validate()
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"model metadata has a bad config: {err}") from err
