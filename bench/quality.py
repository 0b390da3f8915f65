"""Quality on the synthetic set: ours vs exhaustive nearest neighbour over ALL training patches.

    python bench/quality.py [--good 30] [--per-defect 6] [--size 768]

Fit on `--good` good 768x768 modules; test on 10 good + `--per-defect` of every
defect type. The reference is PatchCore without its approximation: every
training patch (same features, same projection) in the bank, searched
exhaustively.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import common  # noqa: F401  (environment)
from vi_stream.evaluation import synthetic
from vi_stream.evaluation.metrics import auroc, f1
from vi_stream.model import AnomalyModel, ModelConfig
from vi_stream.model.anomaly import raw_features, to_heatmap
from vi_stream.search import exact_nn_distance


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--good", type=int, default=30)
    ap.add_argument("--per-defect", type=int, default=6)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--gates", type=float, nargs="*", default=[0.5, 0.75])
    ap.add_argument("--no-exact", action="store_true",
                    help="skip the exhaustive search over all training patches (about 140 s per image at 144 "
                         "dimensions on 2 cores)")
    a = ap.parse_args()
    shape = (a.size, a.size)
    train = [s.image for _n, s in synthetic.dataset(a.good, 0, shape, seed=1)]
    test = [s for _n, s in synthetic.dataset(10, a.per_defect, shape, seed=2)]
    names = [n for n, _s in synthetic.dataset(10, a.per_defect, (128, 128), seed=2)]
    t0 = time.perf_counter()
    model = AnomalyModel.fit(train, ModelConfig())
    fit_s = time.perf_counter() - t0
    cfg = model.config
    fit_imgs = [img for i, img in enumerate(train) if i % cfg.calibration_every != cfg.calibration_every - 1]
    bank = None if a.no_exact else np.concatenate([(raw_features(model.features, img, cfg, model.intensity).reshape(-1, model.features.raw_dim)
                            - model.mean) @ model.components for img in fit_imgs])
    y = np.array([s.mask.any() for s in test])
    ys = np.concatenate([s.mask.ravel() for s in test])
    out = {"train_images": len(fit_imgs), "calibration_images": len(train) - len(fit_imgs),
           "test_good": int((~y).sum()), "test_defective": int(y.sum()), "fit_seconds": round(fit_s, 1),
           "all_training_patches": None if bank is None else int(len(bank)), "bank_patches": int(model.index.bank.shape[0])}
    raws = [raw_features(model.features, s.image, cfg, model.intensity) for s in test]
    qs = [(r.reshape(-1, model.features.raw_dim) - model.mean) @ model.components for r in raws]

    def evaluate(maps, thr):
        sc = np.array([m.max() for m in maps])
        per = {}
        for n, v, yy in zip(names, sc, y):
            if yy:
                t = n.rsplit("_", 1)[0]
                per[t] = per.get(t, 0) + int(v > thr)
        return {"image_auroc": round(auroc(y, sc), 4),
                "pixel_auroc": round(auroc(ys, np.concatenate([m.ravel() for m in maps])), 4),
                "image_f1": round(f1(y, sc > thr), 4),
                "pixel_f1": round(f1(ys, np.concatenate([(m > thr).ravel() for m in maps])), 4),
                "false_positive_images": int(((sc > thr) & ~y).sum()),
                "detected_per_type": per}

    out["command"] = "python bench/quality.py" + (" --no-exact" if a.no_exact else "")
    t0 = time.perf_counter()
    exact = [] if a.no_exact else [to_heatmap(exact_nn_distance(q, bank), r.shape[:3], s.image.shape, cfg) for q, r, s in zip(qs, raws, test)]
    if exact:
        out["exact_nn_all_patches"] = {**evaluate(exact, model.threshold),
                                       "search_seconds_per_image": round((time.perf_counter() - t0) / len(test), 2)}
    for g in a.gates:
        st = {}
        t0 = time.perf_counter()
        ours = [to_heatmap(model.index.distance(q, gate=g * model.threshold, stats_out=st), r.shape[:3],
                            s.image.shape, cfg) for q, r, s in zip(qs, raws, test)]
        dt = (time.perf_counter() - t0) / len(test)
        out[f"ours_gate_{g}"] = {**evaluate(ours, model.threshold), "refined_fraction": round(st["refined"] / st["patches"], 3),
                                 "search_seconds_per_image": round(dt, 4)}
    common.write("quality", out)


if __name__ == "__main__":
    main()
