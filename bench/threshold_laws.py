"""Threshold laws side by side, on the good and defective scores the benchmarks have recorded.

    python bench/threshold_laws.py [--results DIR] [--no-write]

The model sets its threshold from the out-of-fold scores of its good training images by a Gumbel
law fitted by moments (vi_stream/model/calibration.py), at a confidence: at most one false alarm
in 20 for that share of training sets. Good images' scores on fresh lines were found heavier-tailed
than that law expects (bench/history.md, twenty-first session), which asks whether a law with a
tail of its own would put each fit's threshold where its own tail needs it. Each law is tried on
the scores already recorded, so nothing is fitted again and every law sees the same fits:

- ``gumbel``: the model's rule (``calibrated_threshold``); at the records' own confidence it gives
  each fit's recorded threshold, which this script checks before it reports anything;
- ``log-gumbel``: the same law on the logarithms of the scores (a Frechet-like upper tail whose
  weight grows with the scores' relative spread);
- ``gev``: a generalised extreme-value law with a shape of its own, fitted by probability-weighted
  moments (Hosking, Wallis and Wood 1985), its quantile chosen by a parametric bootstrap of the fit
  (BOOTSTRAP draws of as many scores, each fitted again) so that the threshold lets through at most
  one in 20 under the fitted law for the confidence's share of draws (where no quantile does, its
  1 - 1e-6 quantile, and the fit is counted as short of the confidence).

Each law never goes under the model's floor (``calibration.floor``). The records read:
false_alarms-lines.json (study lines: each fit's calibration scores and its line's fresh good
images), false_alarms-line{7,13,16}.json (the tuning lines: fits with 100 fresh good images each)
and structural{,-line13,-line16}.json (the tuning sets' default model: its calibration scores, its
good test images and every defective image, for recall at the threshold). Per law and confidence:
false alarms on fresh good images, recall of the tuning sets' defects, and the thresholds' mean
level (the logarithm of the threshold over the median calibration score): laws that set thresholds
at the same mean level are compared by their false alarms there. No sealed score is read.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import common
import numpy as np

from vi_stream.model.calibration import _gumbel_moments, calibrated_threshold, floor, gumbel_k

ONE_IN = 20
CONFIDENCES = (0.7, 0.8, 0.9, 0.95, 0.98)
BOOTSTRAP = 2000
STUDY = "false_alarms-lines"
FRESH = ("false_alarms-line7", "false_alarms-line13", "false_alarms-line16")
TUNING = ("structural", "structural-line13", "structural-line16")
_gamma = np.vectorize(math.gamma, otypes=[np.float64])


def gumbel(scores, confidence: float) -> float:
    return calibrated_threshold(scores, ONE_IN, confidence=confidence)


def log_gumbel(scores, confidence: float) -> float:
    s = np.asarray(scores, np.float64)
    if not np.all(s > 0):
        raise ValueError("a law of the logarithms needs scores above 0")
    mu, beta = _gumbel_moments(np.log(s))
    return float(max(math.exp(mu + gumbel_k(len(s), ONE_IN, confidence) * beta), floor(s, ONE_IN)))


def gev_fit(x: np.ndarray):
    """Location, scale and shape k (Hosking's sign: k > 0 a bounded upper tail, k < 0 a heavy one) of
    each row of ``x`` by probability-weighted moments; k is kept within +-0.45 (where the estimator's
    approximation holds) and away from 0."""
    x = np.sort(x, axis=-1)
    n = x.shape[-1]
    j = np.arange(n, dtype=np.float64)
    b0 = x.mean(-1)
    b1 = (x * j / (n - 1)).mean(-1)
    b2 = (x * j * (j - 1) / ((n - 1) * (n - 2))).mean(-1)
    c = (2 * b1 - b0) / (3 * b2 - b0) - math.log(2) / math.log(3)
    k = np.clip(7.8590 * c + 2.9554 * c ** 2, -0.45, 0.45)
    k = np.where(np.abs(k) < 1e-6, 1e-6, k)
    g = _gamma(1 + k)
    scale = (2 * b1 - b0) * k / (g * (1 - 2.0 ** -k))
    return b0 - scale * (1 - g) / k, scale, k


def gev_quantile(loc, scale, k, p):
    return loc + scale / k * (1 - (-np.log(p)) ** k)


def gev_exceedance(x, loc, scale, k):
    """The share of the law above ``x``."""
    y = np.maximum(1 - k * (x - loc) / scale, 1e-300)
    return -np.expm1(-(y ** (1 / k)))


def gev_detail(scores, confidence: float) -> tuple[float, bool]:
    """The GEV law's threshold, and whether the confidence was reached: where even the law's
    1 - 1e-6 quantile keeps the target for fewer than that share of the bootstrap's draws (a shape
    so uncertain that no threshold does), that quantile is the threshold and False says so."""
    s = np.asarray(scores, np.float64)
    if len(s) < 3:
        raise ValueError("a GEV fit by moments of order 2 needs 3 scores")
    loc, scale, k = gev_fit(s)
    rng = np.random.default_rng(0)
    draws = gev_quantile(loc, scale, k, rng.random((BOOTSTRAP, len(s))))
    bl, bs, bk = gev_fit(draws)
    target = 1.0 / ONE_IN

    def enough(p: float) -> bool:
        rate = gev_exceedance(gev_quantile(bl, bs, bk, p), loc, scale, k)
        return float(np.mean(rate <= target)) >= confidence
    lo, hi = 1.0 - target, 1.0 - 1e-6
    reached = enough(hi)
    for _ in range(40 if reached else 0):
        p = 0.5 * (lo + hi)
        lo, hi = (lo, p) if enough(p) else (p, hi)
    return float(max(gev_quantile(loc, scale, k, hi), floor(s, ONE_IN))), reached


# each law as scores, confidence -> (threshold, whether the confidence was reached)
LAWS = {"gumbel": lambda s, c: (gumbel(s, c), True), "log-gumbel": lambda s, c: (log_gumbel(s, c), True),
        "gev": gev_detail}


def fits(results: str) -> dict:
    """The recorded fits: (calibration scores, fresh good scores, defective scores or None, the
    recorded threshold, the confidence it was set at), grouped by where they come from."""
    def rec(name):
        d = common.read(name, folder=results)
        if not d:
            raise SystemExit(f"{os.path.join(results, name + '.json')} is missing: run the benchmark that writes it "
                             "(its command is in bench/README.md)")
        return d
    out = {"study": [], "fresh": [], "tuning": []}
    for key, names in (("study", (STUDY,)), ("fresh", FRESH)):
        for name in names:
            v = rec(name)["variants"]["defaults"]
            conf = v["config"]["false_alarm_confidence"]
            if v["config"]["false_alarm_one_in"] != ONE_IN:
                raise SystemExit(f"{name} was recorded for one false alarm in {v['config']['false_alarm_one_in']}, "
                                 f"not {ONE_IN}")
            out[key] += [(f["calibration_scores"], f["test_scores"], None, f["threshold"], conf) for f in v["fits"]]
    for name in TUNING:
        v = next(v for v in rec(name)["variants"] if v["label"] == "default")
        thr, so = v["threshold"], v["scores_over_threshold"]
        bad = [x * thr for fam, xs in so.items() if fam != "good" for x in xs]
        conf = v["config"].get("false_alarm_confidence", 0)   # absent: the target on average (config.saved_settings)
        out["tuning"].append((v["calibration_scores"], [x * thr for x in so["good"]], bad, thr, conf))
    return out


def reproduced(groups: dict) -> float:
    """The largest relative difference between the model's rule, run here on a fit's calibration
    scores at its confidence, and the threshold that fit recorded (0 up to rounding)."""
    return max(abs(gumbel(cal, conf) / thr - 1) for g in groups.values() for cal, _t, _b, thr, conf in g)


def evaluate(groups: dict) -> list[dict]:
    rows = []
    for law, rule in LAWS.items():
        for conf in CONFIDENCES:
            row = {"law": law, "confidence": conf}
            level, unreached, above = [], 0, 0
            for key in ("study", "fresh", "tuning"):
                fa = n = hits = defects = 0
                for cal, good, bad, _thr, _conf in groups[key]:
                    t, reached = rule(cal, conf)
                    unreached += not reached
                    above += t > gumbel(cal, conf)
                    fa += int(np.sum(np.asarray(good) > t))
                    n += len(good)
                    level.append(math.log(t / float(np.median(cal))))
                    if bad is not None:
                        hits += int(np.sum(np.asarray(bad) > t))
                        defects += len(bad)
                row[key] = {"false_alarms": fa, "images": n}
                if defects:
                    row[key].update(detected=hits, defective=defects)
            row["level"] = round(float(np.mean(level)), 4)
            row["unreached"] = unreached
            row["above_gumbel"] = above       # fits whose threshold is above the model's rule's at this confidence
            rows.append(row)
    return rows


def heavy_tailed(groups: dict) -> dict:
    """How many fits' own scores a GEV law fits with a heavy upper tail (shape k below 0), of all."""
    ks = [float(gev_fit(np.asarray(cal, np.float64))[2]) for g in groups.values() for cal, *_rest in g]
    return {"heavy": sum(k < 0 for k in ks), "fits": len(ks)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=common.RESULTS, help="folder of the records read (and of the one written)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    groups = fits(a.results)
    err = reproduced(groups)
    if err > 1e-5:
        sys.exit(f"the model's rule gives thresholds {err:.2%} off the recorded ones: the records were made "
                 "with another rule; run their benchmarks again")
    result = {"command": "python bench/threshold_laws.py", "one_in": ONE_IN, "bootstrap": BOOTSTRAP,
              "fits": {k: len(v) for k, v in groups.items()}, "reproduced": err,
              "gev_shape": heavy_tailed(groups), "laws": evaluate(groups)}
    if a.no_write:
        print(json.dumps(result, indent=2))
    else:
        common.write("threshold_laws", result, a.results)


if __name__ == "__main__":
    main()
