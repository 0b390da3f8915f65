"""Generalisation: defects of families the design was not tuned on, beside anomalib's PatchCore.

    python bench/generalise.py [--set DIR] [--work DIR] [--peer-python PY] [--config k=v ...]
                               [--families tuning|held_out|all] [--no-write]

Leave-families-out: design choices are made on the TUNING families only; figures that claim
generalisation are read on the HELD_OUT families, which nothing was tuned on. The set
(bench/genset.py: a varied module line, 40 training images, 20 good test images, 8 defective
images per family at contrasts drawn from genset.CONTRAST, and a contrast ladder per family) is
written to disk once and read by both sides. With ``--peer-python`` (the interpreter of the
environment bench/setup_peer.sh makes), anomalib's PatchCore and PaDiM run on the same set in
the same run (bench/peer_anomalib.py); their outputs are kept under WORK/peer/ and reused while
the set is unchanged.

Every metric of every side is computed here by the same code: per family image AUROC (its
defective images against all good test images), pixel AUROC, AUPRO (per-region overlap up to
30% FPR), recall with no false alarm on the good test images (a threshold no model can know in
advance, so it compares ranking at the operating point that matters), and for vi_stream recall
at its own fitted threshold, false alarms per good image, and the detection limit: the lowest
ladder contrast (1.0, 0.6, 0.35, 0.2, 0.1) at which at least half of the ladder is still flagged.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np

import common
import genset
import setfiles
from vi_stream.evaluation import synthetic
from vi_stream.evaluation.metrics import RegionOverlap, auroc, auroc_of
from vi_stream.model import AnomalyModel, ModelConfig

TUNING = ("scratch", "dust", "stain", "missing_metal", "damaged_metal", "fibre", "ring", "bridge") + synthetic.STRUCTURAL
HELD_OUT = tuple(f for f in synthetic.FAMILIES if f not in TUNING and f not in synthetic.RESERVED)
PEERS = ("patchcore", "padim")


def run_ours(set_dir: str, out_dir: str, config: ModelConfig, families) -> dict:
    """Fit vi_stream on the set's training images and score every split; writes OUT/<split>.npz."""
    t0 = time.perf_counter()
    model = AnomalyModel.fit(iter(setfiles.stack(set_dir, "train")), config)
    fit_s = time.perf_counter() - t0

    def score(img):
        r = model.score(np.ascontiguousarray(img))
        return r.score, r.heatmap

    score_s, pixels = setfiles.score_splits(set_dir, out_dir, families, score)
    return {"fit_seconds": round(fit_s, 1), "score_mp_per_s": round(pixels / 1e6 / score_s, 2),
            "threshold": round(model.threshold, 4), "calibration_scores": model.meta["calibration_scores"],
            "bank": model.meta["bank_patches"],
            "config": common.recorded_config(model)}


def run_peer(python: str, set_dir: str, out_dir: str, kind: str) -> dict:
    """anomalib in its own environment; reused when its outputs are newer than the set."""
    run_json = os.path.join(out_dir, "run.json")
    if not setfiles.newer_than_set(run_json, set_dir):
        subprocess.run([python, os.path.join(common.HERE, "peer_anomalib.py"), set_dir, out_dir, "--model", kind],
                       check=True)
    with open(run_json) as f:
        return json.load(f)


def evaluate(set_dir: str, out_dir: str, families, threshold: float | None = None) -> dict:
    """Per-family metrics of one side's outputs (scores and maps) against the set's masks."""
    desc = setfiles.load(set_dir)
    good = setfiles.outputs(out_dir, "good")
    gs, gmaps = good["scores"], good["maps"].astype(np.float32)
    per = {}
    for fam in families:
        d = setfiles.outputs(out_dir, fam)
        s, maps = d["scores"], d["maps"].astype(np.float32)
        masks = setfiles.stack(set_dir, f"{fam}_mask")
        lo = float(min(gmaps.min(), maps.min()))
        hi = float(max(gmaps.max(), maps.max()))
        overlap = RegionOverlap(lo, hi if hi > lo else lo + 1.0)
        for m in gmaps:
            overlap.add(np.zeros(m.shape, bool), m)
        for mask, m in zip(masks, maps):
            overlap.add(mask, m)
        ys = np.concatenate([np.zeros(gmaps.size, bool), (np.asarray(masks) > 0).ravel()])
        hs = np.concatenate([gmaps.ravel(), maps.ravel()])
        row = {"image_auroc": round(auroc_of(gs, s), 4),
               "pixel_auroc": round(auroc(ys, hs), 4), "aupro": round(overlap.value(), 4),
               "recall_no_false_alarm": round(float((s > gs.max()).mean()), 3)}
        if threshold is not None:
            row["recall_at_threshold"] = round(float((s > threshold).mean()), 3)
            lad = setfiles.outputs(out_dir, setfiles.ladder(fam))["scores"].reshape(len(desc["ladder_contrasts"]), -1)
            flagged = {str(c): int((row_s > threshold).sum()) for c, row_s in zip(desc["ladder_contrasts"], lad)}
            found = [c for c in desc["ladder_contrasts"] if 2 * flagged[str(c)] >= lad.shape[1]]
            row["ladder_flagged"] = flagged
            row["detection_limit"] = min(found) if found else None
        per[fam] = row
    out = {"per_family": per, **group_means(per, (("held_out_mean", [f for f in families if f in HELD_OUT]),
                                                    ("tuning_mean", [f for f in families if f in TUNING])))}
    # Overall ranking: every defective image of the held-out families against the good ones.
    held = [f for f in families if f in HELD_OUT]
    if held:
        s_all = np.concatenate([setfiles.outputs(out_dir, f)["scores"] for f in held])
        out["held_out_overall_image_auroc"] = round(auroc_of(gs, s_all), 4)
    if threshold is not None:
        out["false_alarms_per_good_image"] = round(float((gs > threshold).mean()), 3)
        if held:
            out["held_out_recall_at_threshold"] = round(float((s_all > threshold).mean()), 3)
    return out


def group_means(per: dict, groups) -> dict:
    """Each group's (a label and its families) mean of the per-family metrics; empty groups left out."""
    keys = [k for k in ("image_auroc", "pixel_auroc", "aupro", "recall_no_false_alarm", "recall_at_threshold")
            if k in next(iter(per.values()))]
    return {label: {k: round(float(np.mean([per[f][k] for f in fams])), 4) for k in keys}
            for label, fams in groups if fams}


def overrides(items) -> dict:
    """``k=v`` items as ModelConfig changes: each value a Python literal, else the text."""
    changes = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            changes[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            changes[key] = value
    return changes


def _override(config: ModelConfig, items) -> ModelConfig:
    return replace(config, **overrides(items))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default=os.path.join(common.HERE, ".work", "genset-768"),
                    help="set directory (built with bench/genset.py defaults if absent)")
    ap.add_argument("--work", default=os.path.join(common.HERE, ".work", "generalise"))
    ap.add_argument("--peer-python", help="interpreter of the anomalib environment (bench/setup_peer.sh)")
    ap.add_argument("--config", nargs="*", default=[], help="ModelConfig overrides, key=value")
    ap.add_argument("--families", choices=("tuning", "held_out", "all"), default="all")
    ap.add_argument("--no-write", action="store_true", help="print only (design experiments)")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.set, setfiles.DESCRIPTION)):
        genset.build(a.set)
    desc = setfiles.load(a.set)
    families = {"tuning": TUNING, "held_out": HELD_OUT, "all": TUNING + HELD_OUT}[a.families]
    config = _override(ModelConfig(), a.config)
    ours = run_ours(a.set, os.path.join(a.work, "ours"), config, families)
    result = {
        "command": "python bench/generalise.py" + (" --peer-python PEER" if a.peer_python else "")
                   + (" --config " + " ".join(a.config) if a.config else "")
                   + (f" --families {a.families}" if a.families != "all" else ""),
        "set": {k: v for k, v in desc.items() if k != "contrasts"},
        "tuning_families": list(TUNING), "held_out_families": list(HELD_OUT),
        "ours": {**ours, **evaluate(a.set, os.path.join(a.work, "ours"), families, ours["threshold"])},
    }
    for kind in PEERS if a.peer_python else ():
        out_dir = os.path.join(a.work, "peer", kind)
        run = run_peer(a.peer_python, a.set, out_dir, kind)
        result[kind] = {**run, **evaluate(a.set, out_dir, families)}
    if not a.peer_python:
        result["peers"] = "not run: pass --peer-python (bench/setup_peer.sh makes the environment)"
    if a.no_write:
        print(json.dumps(result, indent=1))
    else:
        common.write("generalise", result)


if __name__ == "__main__":
    sys.exit(main())
