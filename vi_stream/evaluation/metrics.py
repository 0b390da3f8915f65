"""Detection metrics: AUROC (exact, rank based, ties averaged), F1 and AUPRO (per-region overlap)."""
from __future__ import annotations

import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in size: {y.shape} vs {s.shape}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    # average ranks over ties
    first = np.r_[True, ss[1:] != ss[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], ss.size]
    avg_rank = (starts + ends + 1) / 2.0  # 1-based average rank per tie group
    ranks = np.empty(s.size)
    ranks[order] = avg_rank[group]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_of(good, bad) -> float:
    """AUROC of the scores ``bad`` (defective, the positives) against ``good``: how often a defective
    image outscores a good one, ties counted half."""
    good = np.asarray(good, np.float64).ravel()
    bad = np.asarray(bad, np.float64).ravel()
    return auroc(np.r_[np.zeros(len(good)), np.ones(len(bad))], np.r_[good, bad])


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    y = np.asarray(labels).ravel().astype(bool)
    p = np.asarray(predicted).ravel().astype(bool)
    tp = int((y & p).sum())
    fp = int((~y & p).sum())
    fn = int((y & ~p).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


class RegionOverlap:
    """AUPRO (MVTec AD's segmentation metric), accumulated image by image in fixed memory.

    The per-region overlap PRO(t) is the mean, over the connected defect regions of all
    images, of the fraction of each region's pixels scored >= t; FPR(t) the fraction of good
    pixels scored >= t. AUPRO is the area under PRO over FPR in [0, ``fpr_limit``] (0.3, as
    MVTec AD and anomalib use), divided by ``fpr_limit``, so a perfect map scores 1 and a
    random one about ``fpr_limit / 2``. Every region counts the same however large, so a
    large defect found does not hide a small one missed (pixel AUROC weighs by area).

    Scores are counted in ``bins`` equal bins over [``lo``, ``hi``] (scores outside go to the
    end bins), which keeps memory flat for any number of images; with 2^14 bins over the
    scores' range the area is exact to about 1e-4.
    """

    def __init__(self, lo: float, hi: float, bins: int = 1 << 14, fpr_limit: float = 0.3):
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"score range must be finite with hi > lo, got [{lo}, {hi}]")
        if not 0 < fpr_limit <= 1:
            raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        self.lo, self.hi, self.bins, self.fpr_limit = float(lo), float(hi), int(bins), float(fpr_limit)
        self.good = np.zeros(self.bins, np.float64)     # good pixels per score bin
        self.covered = np.zeros(self.bins, np.float64)  # sum over region pixels of 1 / region area
        self.regions = 0

    def _bin(self, scores: np.ndarray) -> np.ndarray:
        b = ((np.asarray(scores, np.float64) - self.lo) * (self.bins / (self.hi - self.lo))).astype(np.int64)
        return np.clip(b, 0, self.bins - 1)

    def add(self, mask: np.ndarray, amap: np.ndarray) -> None:
        """One image: its ground truth (non-zero = defect) and anomaly map, the same shape."""
        import cv2
        mask = np.asarray(mask) > 0
        if mask.shape != np.shape(amap):
            raise ValueError(f"mask {mask.shape} and map {np.shape(amap)} differ in shape")
        amap = np.asarray(amap)
        self.good += np.bincount(self._bin(amap[~mask]), minlength=self.bins)
        if mask.any():
            n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
            lab = labels[mask]
            area = np.bincount(lab, minlength=n).astype(np.float64)
            self.covered += np.bincount(self._bin(amap[mask]), weights=1.0 / area[lab], minlength=self.bins)
            self.regions += n - 1

    def value(self) -> float:
        """AUPRO; NaN without good pixels or without defect regions."""
        n_good = self.good.sum()
        if n_good == 0 or self.regions == 0:
            return float("nan")
        # Thresholds from the top bin down: both curves rise from (0, 0).
        fpr = np.r_[0.0, np.cumsum(self.good[::-1]) / n_good]
        pro = np.r_[0.0, np.cumsum(self.covered[::-1]) / self.regions]
        lim = self.fpr_limit
        k = int(np.searchsorted(fpr, lim, side="right"))
        x, y = fpr[:k], pro[:k]
        if k < len(fpr) and fpr[k] > fpr[k - 1]:    # the curve cut exactly at the limit
            t = (lim - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
            x, y = np.r_[x, lim], np.r_[y, pro[k - 1] + t * (pro[k] - pro[k - 1])]
        return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / lim)


def aupro(masks, maps, fpr_limit: float = 0.3, bins: int = 1 << 14) -> float:
    """:class:`RegionOverlap` over lists of masks and maps (their scores' range as the bins' range)."""
    maps = [np.asarray(m) for m in maps]
    lo = min(float(m.min()) for m in maps)
    hi = max(float(m.max()) for m in maps)
    acc = RegionOverlap(lo, hi if hi > lo else lo + 1.0, bins, fpr_limit)
    for mask, amap in zip(masks, maps):
        acc.add(mask, amap)
    return acc.value()
