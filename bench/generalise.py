"""Generalisation: defects of families the design was not tuned on, on a module line of its own.

    python bench/generalise.py [--size 768] [--train 30] [--good 20] [--per-family 4] [--ladder 3]

Leave-families-out: design choices are made on the TUNING families only; figures that claim
generalisation are read on the HELD_OUT families, which nothing was tuned on. Every image is a
module of one varied line (`Variation.draw(LINE)`: its own pitch, pad size, rows, texture,
lighting, focus and noise), not the classic module the other benchmarks use; the model is
fitted on good images of that line, as a site fits one per product.

Per family: image AUROC (its defective images against all good test images), pixel AUROC,
AUPRO (per-region overlap up to 30% FPR), recall at the fitted threshold, and the detection
limit: the lowest contrast of a ladder (the same defect drawn at 1.0, 0.6, 0.35, 0.2, 0.1)
at which at least half of the ladder's defects are still flagged. Overall: the same over the
held-out families, and false alarms per good image.

The peer, anomalib's PatchCore with this backbone, belongs beside these figures (issue 14);
until it runs here the results say so.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import common
from vi_stream import synthetic
from vi_stream.metrics import RegionOverlap, auroc
from vi_stream.model import AnomalyModel, ModelConfig

TUNING = ("scratch", "dust", "stain", "missing_metal", "damaged_metal", "fibre", "ring", "bridge")
HELD_OUT = tuple(f for f in synthetic.FAMILIES if f not in TUNING)
LINE = 7                       # the module line: Variation.draw(LINE)
LADDER = (1.0, 0.6, 0.35, 0.2, 0.1)


def _image(shape, seed, families=(), contrast=None):
    return synthetic.module_image(shape, seed, families, contrast=contrast, variation=synthetic.Variation.draw(LINE))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--train", type=int, default=30)
    ap.add_argument("--good", type=int, default=20)
    ap.add_argument("--per-family", type=int, default=4)
    ap.add_argument("--ladder", type=int, default=3, help="defects per family drawn at every contrast")
    a = ap.parse_args()
    shape = (a.size, a.size)
    t0 = time.perf_counter()
    model = AnomalyModel.fit((_image(shape, 10_000 + i).image for i in range(a.train)), ModelConfig())
    fit_s = time.perf_counter() - t0
    thr = model.threshold
    rng = np.random.default_rng(1)

    def score(sample):
        r = model.score(sample.image)
        return r.score, r.heatmap

    good = [score(_image(shape, 20_000 + i)) for i in range(a.good)]
    good_scores = np.array([s for s, _ in good])
    per_family, t_score = {}, time.perf_counter()
    for fi, fam in enumerate(synthetic.FAMILIES):
        samples = [_image(shape, 30_000 + 100 * fi + i, (fam,), float(rng.uniform(0.3, 1.0)))
                   for i in range(a.per_family)]
        scored = [score(s) for s in samples]
        s = np.array([x for x, _ in scored])
        y = np.r_[np.zeros(len(good_scores)), np.ones(len(s))]
        ys = np.concatenate([np.zeros(h.size, bool) for _, h in good] + [smp.mask.ravel() > 0 for smp in samples])
        hs = np.concatenate([h.ravel() for _, h in good] + [h.ravel() for _, h in scored])
        overlap = RegionOverlap(0.0, 4.0 * thr)
        for (_, h) in good:
            overlap.add(np.zeros(h.shape, bool), h)
        for smp, (_, h) in zip(samples, scored):
            overlap.add(smp.mask, h)
        flagged = {}
        for c in LADDER:
            hits = [score(_image(shape, 40_000 + 100 * fi + j, (fam,), c))[0] > thr for j in range(a.ladder)]
            flagged[str(c)] = int(sum(hits))
        found = [c for c in LADDER if flagged[str(c)] * 2 >= a.ladder]
        per_family[fam] = {"held_out": fam in HELD_OUT, "image_auroc": round(auroc(y, np.r_[good_scores, s]), 4),
                           "pixel_auroc": round(auroc(ys, hs), 4), "aupro": round(overlap.value(), 4),
                           "recall_at_threshold": round(float((s > thr).mean()), 3),
                           "ladder_flagged": flagged, "detection_limit": min(found) if found else None}
    held = [per_family[f] for f in HELD_OUT]
    out = {
        "command": (f"python bench/generalise.py --size {a.size} --train {a.train} --good {a.good} "
                    f"--per-family {a.per_family} --ladder {a.ladder}"),
        "line": LINE, "tuning_families": list(TUNING), "held_out_families": list(HELD_OUT),
        "fit_seconds": round(fit_s, 1), "score_seconds": round(time.perf_counter() - t_score, 1),
        "threshold": round(thr, 3),
        "false_alarms_per_good_image": round(float((good_scores > thr).mean()), 3),
        "held_out_mean": {k: round(float(np.mean([h[k] for h in held])), 4)
                          for k in ("image_auroc", "pixel_auroc", "aupro", "recall_at_threshold")},
        "per_family": per_family,
        "peer": "not run yet: anomalib PatchCore is to run beside these figures (issue 14)",
    }
    common.write("generalise", out)


if __name__ == "__main__":
    main()
