"""The sealed split (issue 28): module lines, seeds and families that only a ``--final`` run draws.

    python bench/sealed.py --final [--again REASON] [--config k=v ...]

Design choices are made on the tuning split (bench/structural.py, bench/generalise.py's TUNING on
line 7). The sealed split is drawn here and nowhere else, only under ``--final``: SEALED_LINES
(module lines no tuning run uses), seeds from SEALED_BASE up (far from every seed the tuning sets,
tests and benchmarks draw: tests/test_sealed_split.py checks that building the tuning sets never
draws one), and SEALED_FAMILIES: the families held out of tuning, the structural ones (on lines and
seeds never tuned on), and synthetic.RESERVED, families no other set draws.
Per line: ``--train`` good images to fit a model of that line,
``--good`` good test images and ``--per-family`` defective ones per family at contrasts drawn in
genset.CONTRAST; with the defaults, 3 lines give 102 good test images and 30 per family.

A final run records the commit and the model settings in LEDGER, and refuses to run again on
settings already run unless ``--again REASON`` says why (the reason is recorded too); a tree with
uncommitted changes under vi_stream/ or bench/ is refused (the commit would not describe the code)
unless ``--allow-dirty``. Results: bench/results/sealed.json (per family and overall, image AUROC
with its bootstrap 95% interval, pixel AUROC, AUPRO, recall at each line's fitted threshold, false
alarms per good image) and bench/results/sealed/scores.json (every image's score and threshold);
the ledger is bench/results/sealed/ledger.json.
Scores of different lines' models are pooled as score / that model's threshold (each model's own
unit: 1 is its operating point).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time

import common
import generalise
import genset
import numpy as np

from vi_stream.evaluation import synthetic
from vi_stream.evaluation.metrics import RegionOverlap, auroc
from vi_stream.model import AnomalyModel, ModelConfig

SEALED_LINES = (9101, 9203, 9307)
SEALED_BASE = 3_000_000_000        # seeds: SEALED_BASE + 10^7 x line index + 10^5 x split + i
SEALED_FAMILIES = generalise.HELD_OUT + synthetic.STRUCTURAL + synthetic.RESERVED
LEDGER = os.path.join("sealed", "ledger.json")   # under the results folder, beside sealed/scores.json
BOOTSTRAP = 2000
PIXEL_STEP = 4                     # pixel AUROC on every 4th pixel in each direction (memory)


def seed(line_index: int, split: int, i: int) -> int:
    """split: 0 training, 1 good test, 2 + family index: that family's defective images."""
    return SEALED_BASE + 10_000_000 * line_index + 100_000 * split + i


def sealed_seeds(train: int, good: int, per_family: int) -> set[int]:
    return {seed(li, split, i) for li in range(len(SEALED_LINES)) for split, n in
            [(0, train), (1, good)] + [(2 + f, per_family) for f in range(len(SEALED_FAMILIES))] for i in range(n)}


def bootstrap_auroc(good: np.ndarray, bad: np.ndarray, reps: int = BOOTSTRAP, rng_seed: int = 0) -> list[float]:
    """95% interval of the image AUROC, good and defective images resampled apart."""
    rng = np.random.default_rng(rng_seed)
    y = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    vals = [auroc(y, np.r_[rng.choice(good, len(good)), rng.choice(bad, len(bad))]) for _ in range(reps)]
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def settings_digest(config: ModelConfig, sizes: dict) -> str:
    return hashlib.sha256(json.dumps({"config": config_dict(config), "sizes": sizes}, sort_keys=True).encode()
                          ).hexdigest()[:16]


def config_dict(config: ModelConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=os.path.dirname(common.HERE), capture_output=True, text=True,
                          check=True).stdout.strip()


def check_ledger(path: str, digest: str, again: str | None) -> list[dict]:
    runs = []
    if os.path.exists(path):
        with open(path) as f:
            runs = json.load(f)
    before = [r for r in runs if r["settings_digest"] == digest]
    if before and not again:
        raise SystemExit(f"the sealed split was already run on these settings (commit {before[0]['commit']}, "
                         f"{before[0]['date']}): a second look is a choice made on it. Pass --again REASON "
                         "to run anyway; the reason is recorded")
    return runs


def run(config: ModelConfig, train: int, good: int, per_family: int, size: int) -> tuple[dict, dict, list[dict]]:
    shape = (size, size)
    rng = np.random.default_rng(SEALED_BASE)
    per_image, maps_good, cal = [], [], {}
    fam_maps: dict[str, list] = {f: [] for f in SEALED_FAMILIES}
    fit_s = score_s = 0.0
    for li, line in enumerate(SEALED_LINES):
        v = synthetic.Variation.draw(line)
        t0 = time.perf_counter()
        model = AnomalyModel.fit((synthetic.module_image(shape, seed(li, 0, i), variation=v).image
                                  for i in range(train)), config)
        fit_s += time.perf_counter() - t0
        thr = model.threshold
        cal[str(line)] = {"threshold": round(thr, 4), "lattice": model.meta.get("lattice", {})}
        jobs = [("good", 1, i, None) for i in range(good)]
        jobs += [(f, 2 + fi, i, float(rng.uniform(*genset.CONTRAST)))
                 for fi, f in enumerate(SEALED_FAMILIES) for i in range(per_family)]
        for fam, split, i, contrast in jobs:
            s = synthetic.module_image(shape, seed(li, split, i), () if fam == "good" else (fam,), contrast=contrast,
                                       variation=v)
            t0 = time.perf_counter()
            r = model.score(s.image)
            score_s += time.perf_counter() - t0
            norm = (r.heatmap / thr).astype(np.float32)
            per_image.append({"line": line, "family": fam, "seed": seed(li, split, i), "contrast": contrast,
                              "score": round(r.score, 5), "threshold": round(thr, 5),
                              "lattice_used": bool(r.lattice.get("used"))})
            (maps_good if fam == "good" else fam_maps[fam]).append((s.mask, norm))
    timing = {"fit_seconds": round(fit_s, 1), "score_seconds": round(score_s, 1), "line_models": cal}
    return timing, evaluate(per_image, maps_good, fam_maps), per_image


def evaluate(per_image: list[dict], maps_good, fam_maps) -> dict:
    norm = {id(r): r["score"] / r["threshold"] for r in per_image}
    good = np.array([norm[id(r)] for r in per_image if r["family"] == "good"])
    out, all_bad = {}, []
    good_pix = np.concatenate([m[::PIXEL_STEP, ::PIXEL_STEP].ravel() for _mask, m in maps_good])
    for fam, maps in fam_maps.items():
        bad = np.array([norm[id(r)] for r in per_image if r["family"] == fam])
        all_bad.append(bad)
        ov = RegionOverlap(0.0, 4.0)
        for _mask, m in maps_good:
            ov.add(np.zeros(m.shape, bool), m)
        for mask, m in maps:
            ov.add(mask > 0, m)
        pix = np.concatenate([m[::PIXEL_STEP, ::PIXEL_STEP].ravel() for _mask, m in maps])
        lab = np.concatenate([(mask[::PIXEL_STEP, ::PIXEL_STEP] > 0).ravel() for mask, _m in maps])
        out[fam] = {"images": len(bad),
                    "image_auroc": round(auroc(np.r_[np.zeros(len(good)), np.ones(len(bad))], np.r_[good, bad]), 4),
                    "image_auroc_95": bootstrap_auroc(good, bad),
                    "pixel_auroc": round(auroc(np.r_[np.zeros(good_pix.size, bool), lab], np.r_[good_pix, pix]), 4),
                    "aupro": round(ov.value(), 4), "recall_at_threshold": round(float((bad > 1).mean()), 3)}
    bad = np.concatenate(all_bad)
    overall = {"good_images": len(good), "defective_images": len(bad),
               "image_auroc": round(auroc(np.r_[np.zeros(len(good)), np.ones(len(bad))], np.r_[good, bad]), 4),
               "image_auroc_95": bootstrap_auroc(good, bad),
               "pixel_auroc_mean": round(float(np.mean([r["pixel_auroc"] for r in out.values()])), 4),
               "aupro_mean": round(float(np.mean([r["aupro"] for r in out.values()])), 4),
               "recall_at_threshold": round(float((bad > 1).mean()), 3),
               "false_alarms_per_good_image": round(float((good > 1).mean()), 3)}
    return {"per_family": out, "overall": overall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--final", action="store_true", help="draw and score the sealed split (nothing runs without)")
    ap.add_argument("--again", metavar="REASON", help="run although these settings were run before, and why")
    ap.add_argument("--allow-dirty", action="store_true", help="run with uncommitted changes (recorded)")
    ap.add_argument("--config", nargs="*", default=[], help="ModelConfig overrides, key=value")
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--good", type=int, default=34)
    ap.add_argument("--per-family", type=int, default=10)
    ap.add_argument("--results", default=common.RESULTS, help="folder of the results and the ledger")
    a = ap.parse_args(argv)
    if not a.final:
        ap.error("the sealed split is drawn by a --final run only (see the docstring); tuning uses "
                 "bench/structural.py and bench/generalise.py")
    config = generalise._override(ModelConfig(), a.config)
    sizes = {"size": a.size, "train": a.train, "good": a.good, "per_family": a.per_family}
    digest = settings_digest(config, sizes)
    dirty = _git("status", "--porcelain", "--", "vi_stream", "bench").splitlines()
    dirty = [x for x in dirty if "bench/results/" not in x]
    if dirty and not a.allow_dirty:
        raise SystemExit("uncommitted changes under vi_stream/ or bench/: commit first (the run records the "
                         "commit), or pass --allow-dirty")
    os.makedirs(os.path.join(a.results, "sealed"), exist_ok=True)
    ledger = os.path.join(a.results, LEDGER)
    runs = check_ledger(ledger, digest, a.again)
    entry = {"commit": _git("rev-parse", "HEAD"), "dirty": bool(dirty), "settings_digest": digest,
             "config": config_dict(config), "sizes": sizes, "date": time.strftime("%Y-%m-%d %H:%M"),
             "again": a.again}
    runs.append(entry)                       # recorded before the first image is drawn
    with open(ledger, "w") as f:
        json.dump(runs, f, indent=1)
    timing, result, per_image = run(config, a.train, a.good, a.per_family, a.size)
    out = {"command": "python bench/sealed.py --final" + (" --config " + " ".join(a.config) if a.config else ""),
           "run": entry, "lines": list(SEALED_LINES), "families": list(SEALED_FAMILIES), **timing, **result}
    with open(os.path.join(a.results, "sealed", "scores.json"), "w") as f:
        json.dump({"run": entry, "images": per_image}, f, indent=0)
    with open(os.path.join(a.results, "sealed.json"), "w") as f:
        json.dump({"machine": common.machine(), **out}, f, indent=2)
    print(json.dumps(result["overall"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
