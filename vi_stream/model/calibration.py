"""The threshold from good images: which images set it, their scores' extreme-value law, the target.

Two ways to get good images' scores that the bank did not see (a score of an image against a bank
holding its own patches is near 0):

* **out of fold** (``calibration_folds`` k, 5 by default): every good image is in the bank; image i
  belongs to fold i mod k, the bank's rows remember their image's fold, and each image is scored
  against the bank less its own fold's rows (:meth:`~vi_stream.model.index.PatchIndex.without`,
  the same cells). Every image sets the threshold, none is kept from the bank. The features of
  the images to score are kept in half precision until the bank is built (:class:`FoldCache`, at
  most CACHE_BYTES: a uniform sample of the images beyond).
* **held out** (``calibration_folds`` 0): every ``calibration_every``-th image (at most
  ``max_calibration``) is kept out of the bank and scored against it (:func:`holds_out`).

An image's score is the maximum of its map, so good images' scores follow a Gumbel law, and the
threshold is set from it for the false-alarm target (:func:`calibrated_threshold`).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from vi_stream.errors import ModelError
from vi_stream.model.config import ModelConfig

CACHE_BYTES = 384 * 2 ** 20   # features kept to be scored out of fold: 151 images of 768², 21 of 2048²
GUMBEL_N = 200                # calibration scores the threshold's correction is simulated for at most
MAX_K = 4000.0                # scales of the scores' spread above their location: beyond, no threshold


class FoldCache:
    """What out-of-fold scoring needs of each good image until the bank is built: its fold, its size,
    its features at the map cells it owns (half precision) and its lattice maps' maxima. At most
    CACHE_BYTES: as many images as that holds of the largest offered so far (a larger image
    shrinks the sample, dropping images at random); beyond, a uniform sample of all the images
    offered (algorithm R over images, seeded), so a long training set is calibrated on all of it."""

    def __init__(self, folds: int, seed: int = 0):
        self.folds, self.items, self.offered, self.capacity = folds, [], 0, None
        self.rng = np.random.default_rng([seed, 0xCA1])

    def fold(self, i: int) -> int:
        return i % self.folds

    def offer(self, i: int, shape: tuple[int, int], rows: np.ndarray, lattice_max: list | None) -> None:
        item = (self.fold(i), shape, rows.astype(np.float16), lattice_max)
        fits = max(2, CACHE_BYTES // max(1, item[2].nbytes))
        if self.capacity is None or fits < self.capacity:
            self.capacity = fits
            while len(self.items) > self.capacity:
                self.items.pop(int(self.rng.integers(0, len(self.items))))
        if len(self.items) < self.capacity:
            self.items.append(item)
        else:
            j = int(self.rng.integers(0, self.offered + 1))
            if j < self.capacity:
                self.items[j] = item
        self.offered += 1


def holds_out(i: int, held: int, config: ModelConfig) -> bool:
    """Whether :meth:`AnomalyModel.fit` holds its ``i``-th good image out of the bank to set the
    threshold on, ``held`` being held out already (never with ``calibration_folds``: every image
    is in the bank, and scored by the other folds')."""
    return (not config.calibration_folds and i % config.calibration_every == config.calibration_every - 1
            and held < config.max_calibration)


def calibration_indices(n: int, config: ModelConfig) -> list[int]:
    """The good images, of ``n``, that :meth:`AnomalyModel.fit` holds out (:func:`holds_out`)."""
    out: list[int] = []
    for i in range(n):
        if holds_out(i, len(out), config):
            out.append(i)
    return out


def calibrated_threshold(scores, one_in: int, *, confidence: float) -> float:
    """The image threshold from the scores of good images the bank did not see, for a false-alarm target.

    An image's score is the maximum of many patch distances, so good images' scores follow an
    extreme-value (Gumbel) law. Its location and scale are estimated from the calibration
    scores by their moments, and the threshold is location + k * scale, with k chosen for this
    many calibration images (:func:`gumbel_k`): the estimates are rough, and the threshold they
    give lets through more or fewer good images than the law's own quantile would, from one
    training set to the next. With ``confidence`` c (0.9 by default in ModelConfig) k is such
    that the share of good images above the threshold is at most 1/``one_in`` for a share c of
    training sets; with 0 it is 1/``one_in`` *on average* over training sets (the rule before
    the confidence: from 40 scores, about 40% of training sets then let through more than the
    target, one in ten 1.6-1.7 times it). The threshold never falls below :func:`floor`.
    """
    s = np.asarray(scores, np.float64)
    if len(s) < 2 or not np.all(np.isfinite(s)):
        raise ModelError(f"need at least two finite calibration scores, got {list(s)}")
    mu, beta = _gumbel_moments(s)
    return float(max(mu + gumbel_k(len(s), one_in, confidence) * beta, floor(s, one_in)))


def floor(s: np.ndarray, one_in: int) -> float:
    """The least threshold, whatever the fitted law: 2% above the highest score while there are fewer
    scores than ``one_in`` (identical scores must not put it on their own score), from then on 2%
    above their empirical 1 - 1/``one_in`` quantile. Out of fold every good image gives a score; the
    highest of 40 sits near the 97.5th percentile, and a floor there would set the threshold for
    fewer false alarms than the target asks (and give up recall for it)."""
    return float((s.max() if len(s) < one_in else np.quantile(s, 1.0 - 1.0 / one_in)) * 1.02)


def _gumbel_moments(s: np.ndarray):
    """Location and scale of a Gumbel law from its mean and standard deviation (along the last axis)."""
    beta = s.std(axis=-1, ddof=1) * math.sqrt(6.0) / math.pi
    return s.mean(axis=-1) - 0.5772156649 * beta, beta


@functools.lru_cache(maxsize=64)
def gumbel_k(n: int, one_in: int, confidence: float = 0.0, draws: int = 40_000) -> float:
    """k for a threshold mu_hat + k * beta_hat, mu_hat and beta_hat being moment estimates from ``n``
    Gumbel draws: with ``confidence`` c, the share of good images above it is at most 1/``one_in``
    in a share c of draws; with 0, it is 1/``one_in`` on average over the draws. The law is one of
    location and scale, so k depends on n, the target and c only; it is found by simulation (a
    fixed seed: the same k every time) and bisection. Beyond GUMBEL_N scores k is that of GUMBEL_N
    (it changes by under 1% from there; the simulation's memory grows with n). From very few scores
    k is large (238 for 2 scores at one in 20 with confidence 0.99): the bracket grows until it
    holds k, and a k beyond MAX_K (no threshold from these scores could keep the target) is a
    ModelError naming what to change."""
    mu, b = _gumbel_moments(np.random.default_rng(0).gumbel(size=(draws, min(n, GUMBEL_N))))
    target = 1.0 / one_in

    def short(k: float) -> bool:                     # does the threshold at k let through too many?
        rate = -np.expm1(-np.exp(-(mu + k * b)))     # each draw's share of good images above its threshold
        return float(np.mean(rate)) > target if not confidence else float(np.mean(rate <= target)) < confidence
    lo, hi = 0.0, 60.0
    while short(hi):
        lo, hi = hi, 2 * hi
        if hi > MAX_K:
            raise ModelError(f"{n} calibration scores cannot set a threshold for one false alarm in {one_in}"
                             + (f" with confidence {confidence:g}" if confidence else "")
                             + ": give more good images, or ask for a lower target or confidence")
    for _ in range(40):
        k = 0.5 * (lo + hi)
        lo, hi = (k, hi) if short(k) else (lo, k)
    return 0.5 * (lo + hi)
