"""The anomaly model: fitted on good images only, scores any image.

    >>> from vi_stream.evaluation.synthetic import module_image
    >>> goods = [module_image(seed=i).image for i in range(10)]
    >>> model = AnomalyModel.fit(goods, ModelConfig(bank_size=20000))   # doctest: +SKIP
    >>> r = model.score(module_image(seed=99, defects=("dust",)).image)  # doctest: +SKIP
    >>> r.is_anomalous, r.defects[0]["bbox"]                              # doctest: +SKIP

Longer than 300 lines: fitting and scoring share one configuration, one feature path and one
bank; the parts each uses are apart (tiling, features, aggregate, index, stats, postprocess).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from vi_stream.model import postprocess
from vi_stream.errors import ConfigError, InputError
from vi_stream.model.tiling import at_size, make_grid, owned_cells, stitch, tile, zoomed, zoomed_shape
from vi_stream.model import aggregate, lattice, lattice_spread
from vi_stream.model.features import FEATURE_STRIDE, PatchFeatures
from vi_stream.model.index import PatchIndex
from vi_stream.model.stats import Moments, Reservoir
from vi_stream.model.config import RULE_SETTINGS, ModelConfig, rule_record
from vi_stream.model.calibration import FoldCache, calibrated_threshold, holds_out


# On CPU the backbone is fastest with about 0.3 megapixels per call: the activations then stay
# in cache (2-3x faster per pixel than 16 tiles per call; bench/history.md).
CPU_CALL_PIXELS = 3 * 320 * 320
CHUNK_TILES = 64   # tiles whose features are held at once while scoring (a 2048x2048 image is 64)


def tiles_per_call(config: ModelConfig, device) -> int:
    """How many tiles go through the backbone together: ``batch_size``, and on CPU no more than
    fit in ``CPU_CALL_PIXELS`` (a GPU wants large batches)."""
    if getattr(device, "type", str(device)) != "cpu":
        return config.batch_size
    return max(1, min(config.batch_size, CPU_CALL_PIXELS // (config.tile * config.tile)))


@dataclass
class ScoreResult:
    heatmap: np.ndarray          # float32 (H, W), anomaly distance per pixel
    mask: np.ndarray             # uint8 (H, W), 1 where heatmap > threshold
    score: float                 # image score: max of the heatmap
    threshold: float
    defects: list[dict]
    timings: dict = field(default_factory=dict)  # seconds: backbone, features, search, post
    lattice: dict = field(default_factory=dict)  # the image's lattice and whether its score was used

    @property
    def is_anomalous(self) -> bool:
        return self.score > self.threshold


@dataclass
class Intensity:
    """Maps raw pixel values to [0, 1]: (v - lo) / (hi - lo)."""

    lo: float
    hi: float

    @classmethod
    def for_image(cls, image: np.ndarray) -> "Intensity":
        if image.dtype == np.uint8:
            return cls(0.0, 255.0)
        if image.dtype == np.uint16:
            bits = max(8, int(math.ceil(math.log2(int(image.max()) + 1))))
            return cls(0.0, float(2 ** bits - 1))
        if np.issubdtype(image.dtype, np.floating):
            return cls(0.0, 1.0)
        raise InputError(f"unsupported image type {image.dtype}; use uint8, uint16 or float")


def check_image(image: np.ndarray, channels: int | None = None) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InputError(f"image must be HxW (grey) or HxWx3 (colour), got shape {image.shape}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise InputError(f"image is too small: {image.shape[1]}x{image.shape[0]} (need at least 16x16)")
    if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"unsupported image type {image.dtype}; use uint8, uint16 or float")
    if np.issubdtype(image.dtype, np.floating):
        # a NaN would make the score NaN, and NaN > threshold is False: the image would pass as good
        bad = image.size - int(np.count_nonzero(np.isfinite(image)))
        if bad:
            raise InputError(f"image has {bad} pixel values that are not finite numbers (NaN or infinity)",
                             "not_finite")
    c = 1 if image.ndim == 2 else 3
    if channels is not None and c != channels:
        raise InputError(f"model expects {'grey' if channels == 1 else 'colour'} images, got "
                         f"{'grey' if c == 1 else 'colour'} {image.shape}")
    return image


class AnomalyModel:
    FORMAT_VERSION = 1

    def __init__(self, config: ModelConfig, channels: int, intensity: Intensity, mean: np.ndarray,
                 components: np.ndarray, index: PatchIndex, threshold: float, meta: dict,
                 device: str | None = None):
        self.config = config.validate()
        self.channels = channels
        self.intensity = intensity
        self.mean = mean
        self.components = components
        self.index = index
        self.threshold = float(threshold)
        self.meta = meta
        self.features = PatchFeatures(config.backbone, config.taps, channels, device)
        self.features.set_projection(mean, components)
        self.lattice = meta.get("lattice") or {"enabled": False, "reason": "the model predates the lattice score"}

    @property
    def lattice(self) -> dict:
        """The lattice score's calibration (:func:`~vi_stream.model.lattice.calibrate`)."""
        return self._lattice

    @lattice.setter
    def lattice(self, calibration: dict) -> None:
        # the maps and blur it names, read once here rather than per frame (a file's were checked at load)
        self._lattice_spec = lattice.spec(calibration) if calibration.get("enabled") else None
        self._lattice_spread = (lattice_spread.read(calibration.get("spread"), len(self._lattice_spec[0]))
                                if self._lattice_spec else None)
        self._lattice = calibration

    # ------------------------------------------------------------------ identity
    @property
    def model_id(self) -> str:
        return self.meta.get("model_id", "unfitted")

    def info(self) -> dict:
        return {**self.meta, "threshold": self.threshold, "device": str(self.features.device)}

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, images: Iterable[np.ndarray], config: ModelConfig = ModelConfig(), device: str | None = None,
            progress: Callable[[int], None] | None = None, calibrate_first: int | None = None) -> "AnomalyModel":
        """Fit on good images (an iterable, consumed once; memory bounded by ``bank_size`` and, out of
        fold, calibration.CACHE_BYTES). Only the first ``calibrate_first`` images (all by default) may
        set the threshold: a retrain's verified tiles join the bank, but a tile's maximum is taken over
        far fewer patches than a module image's and would not follow its law."""
        config = config.validate()
        started = time.perf_counter()
        digest = hashlib.sha256()
        feats: PatchFeatures | None = None
        moments: Moments | None = None
        reservoir: Reservoir | None = None
        calib: list[tuple[tuple[int, int], np.ndarray, list | None]] = []  # held out: (shape, rows, lattice maxima)
        folds = FoldCache(config.calibration_folds, config.seed) if config.calibration_folds else None
        lattice_max: list = []        # each good image's lattice maps' maxima (per appearance bin with the spread)
        spread = lattice_spread.SpreadStats(lattice.MAPS) if config.lattice and config.lattice_spread else None
        channels = intensity = None
        n_images = n_tiles = 0
        for i, image in enumerate(images):
            image = check_image(image, channels)
            if channels is None:
                channels = 1 if image.ndim == 2 else 3
                intensity = Intensity.for_image(image)
                feats = PatchFeatures(config.backbone, config.taps, channels, device)
                moments = Moments(feats.raw_dim)
                reservoir = Reservoir(config.bank_size, feats.raw_dim, config.seed)
            digest.update(f"{image.shape}{image.dtype}".encode())
            digest.update(np.ascontiguousarray(image).tobytes())
            may_calibrate = calibrate_first is None or i < calibrate_first
            held_out = may_calibrate and holds_out(i, len(calib), config)
            raw = raw_features(feats, image, config, intensity)
            n_tiles += raw.shape[0]
            lmax = None
            if config.lattice:
                lmax = _lattice_maxima(i, image, intensity, spread)
                lattice_max.append(lmax)
            if held_out:
                calib.append((image.shape[:2], _owned_rows(raw, image.shape[:2], config), lmax))
            else:
                flat = raw.reshape(-1, raw.shape[-1])
                moments.update(flat)
                reservoir.update(flat, folds.fold(i) if folds else 0)
                if folds and may_calibrate:
                    folds.offer(i, image.shape[:2], _owned_rows(raw, image.shape[:2], config), lmax)
            n_images += 1
            if progress:
                progress(1)
        if folds and n_images < folds.folds:
            raise InputError(f"need at least {folds.folds} good images to fit (one per fold at least: each is "
                             f"scored against the other folds' patches to set the threshold), got {n_images}")
        if not folds and len(calib) < 2:
            raise InputError(f"need at least {2 * config.calibration_every} good images to fit "
                             f"(one in {config.calibration_every} is held out to set the threshold, and it takes "
                             f"two at least), got {n_images}")
        # PCA from the streamed covariance.
        cov = moments.covariance()
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][: min(config.dim, feats.raw_dim)]
        components = np.ascontiguousarray(evecs[:, order], np.float32)
        mean = moments.mean.astype(np.float32)
        bank = (reservoir.filled - mean) @ components
        index = PatchIndex.build(bank, config.cells, config.nprobe, config.seed,
                                 reservoir.filled_labels if folds else None)
        # Threshold from good images the bank did not see (out of fold, or held out), searched
        # exhaustively within the probed cells.
        scores = []
        if folds:
            for f in sorted({item[0] for item in folds.items}):
                others = index.without(f)
                for _f, shape, rows, lmax in (item for item in folds.items if item[0] == f):
                    scores.append(_calibration_score(others, shape, rows, mean, components, config))
                    calib.append((shape, None, lmax))
            index.labels = None
        else:
            scores = [_calibration_score(index, shape, rows, mean, components, config) for shape, rows, _l in calib]
        spread_record = None
        if spread is not None:     # the maxima per bin, read over the spread the other folds' images set
            spread_record = spread.tables()
            lattice_max = [spread.maxima(m) for m in lattice_max]
            calib = [(shape, rows, spread.maxima(m)) for shape, rows, m in calib]
        lat = (lattice.calibrate(scores, lattice_max, config.lattice_weight, spread_record) if config.lattice
               else {"enabled": False, "reason": "off (lattice=False)"})
        if lat["enabled"]:   # an image's fused maximum is the largest of its maps' maxima (kNN, gained lattice)
            scores = [lattice.fused_maximum(s, c[2], lat["gains"]) for s, c in zip(scores, calib)]
        threshold = calibrated_threshold(scores, config.false_alarm_one_in, confidence=config.false_alarm_confidence)
        index.gate = float(config.gate_fraction * threshold)
        meta = {
            "format_version": cls.FORMAT_VERSION,
            "backbone": config.backbone,
            "layers": [f"_blocks.{t}" for t in config.taps],
            "tile": config.tile,
            "overlap": config.overlap,
            "channels": channels,
            "intensity": [intensity.lo, intensity.hi],
            "config": _saved_config(config),
            "good_images": n_images,
            "training_images": n_images if folds else n_images - len(calib),   # in the bank
            "calibration_images": len(calib),                                    # setting the threshold
            "training_tiles": int(n_tiles),
            "training_patches": int(reservoir.seen),
            "bank_patches": int(len(bank)),
            "training_digest": digest.hexdigest(),
            "calibration_scores": [round(v, 6) for v in scores],
            "lattice": lat,
            "threshold_rule": {"rule": "gumbel", "false_alarm_one_in": config.false_alarm_one_in,
                               "calibration_images": len(calib), **rule_record(config)},
            "fit_seconds": round(time.perf_counter() - started, 3),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "vi_stream_version": _version(),
        }
        meta["model_id"] = f"{config.backbone}-{digest.hexdigest()[:12]}"
        return cls(config, channels, intensity, mean, components, index, threshold, meta, device)

    # ------------------------------------------------------------------ scoring
    def score(self, image: np.ndarray, threshold: float | None = None) -> ScoreResult:
        """Heatmap, mask, score and defects for one image (grey or colour, any size >= 16 px)."""
        image = check_image(image, self.channels)
        thr = self.threshold if threshold is None else float(threshold)
        if not thr > 0 or not math.isfinite(thr):
            raise ConfigError(f"threshold must be a positive number, got {threshold!r}")
        cfg = self.config
        t0 = time.perf_counter()
        seen = zoomed(image, cfg.zoom, self.intensity)    # what the backbone sees (the image itself at zoom 1)
        tiles, grid = tile(seen, cfg.tile, cfg.overlap, self.intensity.lo,
                           1.0 / (self.intensity.hi - self.intensity.lo))
        timings = {"tiling": time.perf_counter() - t0, "backbone": 0.0, "features": 0.0, "search": 0.0}
        fgrid = grid.scaled(FEATURE_STRIDE)
        # Each map position is searched once, from the tile it is farthest inside (tiling.stitch):
        # the overlaps would otherwise be searched twice (36% of the patches of a 768x768 image).
        src, dst = owned_cells(fgrid)
        cells = fgrid.tile * fgrid.tile
        coarse = np.empty(fgrid.height * fgrid.width, np.float32)
        cpu = self.features.device.type == "cpu"
        for c, f in enumerate(self._feature_chunks(tiles, timings)):
            t3 = time.perf_counter()
            first = c * CHUNK_TILES * cells
            lo, hi = np.searchsorted(src, (first, first + f.shape[0] * cells))
            rows = src[lo:hi] - first
            if cpu:
                d = self.index.distance(aggregate.gather_rows(f, rows))
            else:
                q = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])[torch.from_numpy(rows).to(f.device)]
                d = self.index.distance_torch(q).cpu().numpy()
            coarse[dst[lo:hi]] = d
            timings["search"] += time.perf_counter() - t3
        t5 = time.perf_counter()
        heat = _heat(coarse, fgrid, seen.shape, image.shape, cfg)
        if self.lattice.get("enabled"):
            t6 = time.perf_counter()
            maps, blur, reach = self._lattice_spec
            heat, lat = lattice.fuse(heat, image, self.intensity.lo, self.intensity.hi, self.lattice["gains"],
                                     maps, blur, reach=reach, spread=self._lattice_spread)
            timings["lattice"] = time.perf_counter() - t6
        else:
            lat = {"used": False, "reason": self.lattice.get("reason", "off")}
        mask, defects = postprocess.defects_from(heat, thr, cfg.min_defect_area)
        timings["post"] = time.perf_counter() - t5 - timings.get("lattice", 0.0)
        return ScoreResult(heat, mask, float(heat.max()), thr, defects, timings, lat)

    def _feature_chunks(self, tiles: np.ndarray, timings: dict) -> Iterator[np.ndarray | torch.Tensor]:
        """Projected features (n, D, h, w) of up to CHUNK_TILES tiles at a time: NCHW numpy on
        CPU (:meth:`PatchFeatures.projected_chunk`, one search per chunk as in
        :func:`_features_by_chunk`), torch tensors on CUDA."""
        if self.features.device.type != "cpu":
            yield from _features_by_chunk(self.features, tiles, self.config, self.features.head, timings)
            return
        step = tiles_per_call(self.config, self.features.device)
        for c in range(0, len(tiles), CHUNK_TILES):
            yield self.features.projected_chunk(tiles[c:c + CHUNK_TILES], step, timings)


def _features_by_chunk(feats: PatchFeatures, tiles: np.ndarray, config: ModelConfig,
                       head: Callable[[list[torch.Tensor]], torch.Tensor],
                       timings: dict | None = None) -> Iterator[torch.Tensor]:
    """Features (n, D, h, w) of up to CHUNK_TILES tiles at a time.

    The backbone runs ``tiles_per_call`` tiles per call, which suits its cache use, and the head
    follows each call while the taps are still in cache (at 2048x2048 a chunk's taps are 64 MB).
    The search then runs once per chunk, which keeps torch's and numba's thread pools from
    alternating call by call (measured to slow both). Chunks bound memory for very large images.
    """
    step = tiles_per_call(config, feats.device)
    for c in range(0, len(tiles), CHUNK_TILES):
        chunk = tiles[c:c + CHUNK_TILES]
        parts = []
        for b in range(0, len(chunk), step):
            t1 = time.perf_counter()
            taps = feats.trunk_forward(feats.to_tensor(chunk[b:b + step]))
            t2 = time.perf_counter()
            parts.append(head(taps))
            if timings is not None:
                timings["backbone"] += t2 - t1
                timings["features"] += time.perf_counter() - t2
        yield parts[0] if len(parts) == 1 else torch.cat(parts)


def raw_features(feats: PatchFeatures, image: np.ndarray, config: ModelConfig, intensity: Intensity) -> np.ndarray:
    """(tiles, h, w, raw_dim) unprojected features of one image (at the config's zoom)."""
    tiles, _grid = tile(zoomed(image, config.zoom, intensity), config.tile, config.overlap, intensity.lo,
                        1.0 / (intensity.hi - intensity.lo))
    out = [f.permute(0, 2, 3, 1).float().cpu().numpy()
           for f in _features_by_chunk(feats, tiles, config, feats.raw_head)]
    return np.concatenate(out)


def _lattice_maxima(i: int, image: np.ndarray, intensity: Intensity, spread: lattice_spread.SpreadStats | None):
    """Good image ``i``'s lattice maps' maxima (None without a lattice); with ``spread``, its fold and
    maxima per appearance bin (:meth:`~.lattice_spread.SpreadStats.add`, which also gathers its spread)."""
    if spread is None:
        return lattice.maxima(lattice.work_maps(image, intensity.lo, intensity.hi)[0])
    maps, parts, _lat = lattice.work_parts(image, intensity.lo, intensity.hi)
    return None if maps is None else spread.add(i, maps, lattice_spread.appearance(parts.b, parts.d), parts.d)


def _feature_grid(shape: tuple[int, int], config: ModelConfig):
    """The size of the image the backbone sees (at the config's zoom) and its tiles' feature grid."""
    zshape = zoomed_shape(shape, config.zoom)
    return zshape, make_grid(zshape[0], zshape[1], config.tile, config.overlap).scaled(FEATURE_STRIDE)


def _owned_rows(raw: np.ndarray, shape: tuple[int, int], config: ModelConfig) -> np.ndarray:
    """An image's raw features (:func:`raw_features`) at the map cells each tile owns (once each)."""
    src, _dst = owned_cells(_feature_grid(shape, config)[1])
    return raw.reshape(-1, raw.shape[-1])[src]


def _calibration_score(index: PatchIndex, shape: tuple[int, int], rows: np.ndarray, mean: np.ndarray,
                       components: np.ndarray, config: ModelConfig) -> float:
    """The kNN map's maximum of a good image the bank did not see (its :func:`_owned_rows`)."""
    zshape, fgrid = _feature_grid(shape, config)
    _src, dst = owned_cells(fgrid)
    coarse = np.empty(fgrid.height * fgrid.width, np.float32)
    coarse[dst] = index.distance((rows.astype(np.float32) - mean) @ components, gate=0.0)
    return float(_heat(coarse, fgrid, zshape, shape, config).max())


def _heat(coarse: np.ndarray, fgrid, seen: tuple[int, ...], shape: tuple[int, ...], config: ModelConfig
          ) -> np.ndarray:
    """The stitched per-patch distances (flat, on the feature grid of the image the backbone saw, of
    shape ``seen``) as a smoothed map at the image's own ``shape`` (averaged back from ``seen`` at a
    zoom: :func:`~.tiling.at_size`)."""
    heat = postprocess.upsample(coarse.reshape(fgrid.height, fgrid.width), FEATURE_STRIDE, seen[0], seen[1],
                                config.smooth_sigma)
    return at_size(heat, shape)


def to_heatmap(dist: np.ndarray, tshape: tuple[int, int, int], shape: tuple[int, int], config: ModelConfig
                ) -> np.ndarray:
    """Heatmap from distances of every patch of every tile (benchmarks and tests: reference searches)."""
    zshape, grid = _feature_grid(shape, config)
    return _heat(stitch(dist.reshape(tshape).astype(np.float32), grid), grid, zshape, shape, config)


def _saved_config(config: ModelConfig) -> dict:
    """The config as the file keeps it. With the lattice score off and its weight at the default, the
    two lattice settings are left out, and so is a zoom of 1: an older vi_stream (a worker, a Slurm
    node not yet upgraded) refuses a file naming settings it does not know, and reading such a file
    takes them as off (and the zoom as 1). ``lattice_spread`` is left out when off with the lattice on
    (reading takes it as off) and whenever the lattice is off (where it is moot: reading takes the
    default)."""
    d = _jsonable(asdict(config))
    for name in RULE_SETTINGS:      # kept in threshold_rule: they act at the fit only (config.rule_settings)
        d.pop(name)
    if not config.lattice or not config.lattice_spread:
        d.pop("lattice_spread")
    if not config.lattice and config.lattice_weight == ModelConfig().lattice_weight:
        d.pop("lattice")
        d.pop("lattice_weight")
    if config.zoom == ModelConfig().zoom:
        d.pop("zoom")               # likewise: a file at zoom 1 loads in a vi_stream from before zoom
    return d


def _jsonable(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _version() -> str:
    from vi_stream._version import __version__
    return __version__
