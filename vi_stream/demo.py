"""The offline demo: synthetic good modules -> model -> scored test modules -> pictures."""
from __future__ import annotations

import json
import os
import sys
import time

from . import offline
from .model import ModelConfig, read_meta


def run_offline_demo(out: str, n_good: int, per_defect: int, device: str = "cpu") -> int:
    started = time.perf_counter()
    train_dir, _ = offline.write_synthetic(os.path.join(out, "train"), n_good, 0, seed=1)
    test_dir, mask_dir = offline.write_synthetic(os.path.join(out, "test"), 4, per_defect, seed=2)
    model_path = os.path.join(out, "model.npz")
    cached = os.path.isfile(model_path)
    if cached:
        try:
            cached = read_meta(model_path).get("training_images", 0) + read_meta(model_path).get(
                "calibration_images", 0) == n_good
        except Exception:  # a broken cache is simply refitted
            cached = False
    if not cached:
        print(f"fitting on {n_good} synthetic good modules ...", file=sys.stderr)
        offline.train(train_dir, model_path, ModelConfig(), device)
    scored_dir = os.path.join(out, "scored")
    results = offline.score(model_path, test_dir, scored_dir, device=device)
    report = offline.evaluate(model_path, test_dir, mask_dir, os.path.join(out, "evaluation.json"), device)
    print(f"{'image':28s} {'score':>8s}  verdict    defects")
    for r in results:
        truth = "defect" if offline.find_mask(mask_dir, r.path) else "good"
        verdict = "ANOMALOUS" if r.is_anomalous else "ok"
        print(f"{os.path.basename(r.path):28s} {r.score:8.3f}  {verdict:9s}  {len(r.defects)} (truth: {truth})")
    print(json.dumps({k: report[k] for k in ("image_auroc", "pixel_auroc", "image_f1", "pixel_f1",
                                             "false_positive_images", "missed_images")}))
    print(f"overlays: {scored_dir}/*_overlay.png  ({time.perf_counter() - started:.0f} s)")
    return 0
