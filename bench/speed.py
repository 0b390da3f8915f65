"""Scoring speed and fit time.

    python bench/speed.py [--repeats 15] [--config k=v ...]

Scoring: 768x768 and 2048x2048 grey images, median of `--repeats` calls
after a warm-up, tiles/s and megapixels/s, with the time split into the
backbone forward and everything else (tiling, feature head, search,
post-processing). The share outside the backbone is taken per call and its
median reported with its range, and each part's time is its median over the
calls: the VM's speed drifts from call to call, so one call's split (what
this reported before) moved the share by a point or more. Fit: 40 good
768x768 images. ``--config`` sets ModelConfig fields (``lattice=False``: the kNN map alone, without
the lattice score's cost).

Each size is scored by a model fitted on good images of that size, as in use:
the 768x768 model finds 45% of a good 2048x2048 synthetic module above half
its threshold (the larger image is drawn at another scale), and the search
refines every such patch, so scoring 2048x2048 with it measures an
out-of-distribution case.
"""
from __future__ import annotations

import argparse
import statistics
import time

import common
import generalise
from vi_stream.evaluation import synthetic
from vi_stream.model import AnomalyModel, ModelConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--fit-images", type=int, default=40)
    ap.add_argument("--fit-images-2048", type=int, default=10)
    ap.add_argument("--config", nargs="+", default=[], metavar="k=v", help="ModelConfig fields (lattice=False)")
    a = ap.parse_args()
    config = generalise._override(ModelConfig(), a.config)
    train = [synthetic.module_image((768, 768), seed=i).image for i in range(a.fit_images)]
    t0 = time.perf_counter()
    model = AnomalyModel.fit(train, config)
    fit_s = time.perf_counter() - t0
    out = {"command": "python bench/speed.py" + (f" --repeats {a.repeats}" if a.repeats != 15 else "")
                      + (" --config " + " ".join(a.config) if a.config else ""),
           "config": list(a.config),
           "fit": {"images": a.fit_images, "size": "768x768", "seconds": round(fit_s, 1),
                   "training_patches": model.meta["training_patches"], "bank": model.meta["bank_patches"]}}
    models = {768: model, 2048: common.model_for(2048, a.fit_images_2048, config)}
    for size in (768, 2048):
        model = models[size]
        img = synthetic.module_image((size, size), seed=4242, defects=("dust", "scratch")).image
        model.score(img)  # warm-up: tracing, numba
        totals, parts = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            r = model.score(img)
            totals.append(time.perf_counter() - t)
            parts.append(r.timings)
        med = statistics.median(totals)
        shares = [1 - p["backbone"] / t for p, t in zip(parts, totals)]
        split = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
        n_tiles = (-(-(size - model.config.overlap) // (model.config.tile - model.config.overlap))) ** 2
        out[f"score_{size}"] = {
            "seconds_per_image": round(med, 4),
            "megapixels_per_s": round(size * size / med / 1e6, 2),
            "tiles_per_s": round(n_tiles / med, 1),
            "tiles_per_image": n_tiles,
            "backbone_seconds": round(split["backbone"], 4),
            "outside_backbone_fraction": round(statistics.median(shares), 3),
            "outside_backbone_fraction_range": [round(min(shares), 3), round(max(shares), 3)],
            "split_seconds": {k: round(v, 4) for k, v in split.items()},
            "all_runs_seconds": [round(v, 4) for v in totals],
            "model_fitted_on": f"{model.meta['good_images']} good {size}x{size}",
            "image_score_vs_threshold": [round(r.score, 3), round(model.threshold, 3)],
        }
    common.write("speed", out)


if __name__ == "__main__":
    main()
