"""bench/speed.py for another revision and this tree, interleaved: did a change move the figures?

    python bench/ab_speed.py --base REV [--rounds 2] [--quality] [--name ab_speed]

Checks REV out into a temporary git worktree, then runs its bench/speed.py and ours in turn,
``--rounds`` times (base, ours, base, ours, ...), so both see the same phases of this
VM's drifting speed. The share of scoring time outside the backbone is the fair comparison
(the backbone's own speed drifts by ±30% between runs).

``--quality`` also runs each tree's bench/quality.py once (a smaller set: 12 good training
images, 3 of each defect, no exhaustive reference): a change that only moves code must give
the same AUROCs and recall to the last digit. ``--name`` records the run as
``bench/results/NAME.json`` (so an A/B of one change does not replace another's).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import common

ROOT = os.path.dirname(common.HERE)


def _run(tree: str) -> dict:
    bench = os.path.join(tree, "bench")
    env = dict(os.environ, PYTHONPATH=tree)
    subprocess.run([sys.executable, os.path.join(bench, "speed.py")], cwd=bench, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(bench, "results", "speed.json")) as f:
        d = json.load(f)
    out = {"fit_seconds": d["fit"]["seconds"]}
    for key in ("score_768", "score_2048"):
        s = d[key]
        out[key] = {"megapixels_per_s": s["megapixels_per_s"], "outside_backbone_fraction": s["outside_backbone_fraction"],
                    "backbone_ms": round(1e3 * s["split_seconds"]["backbone"], 1),
                    "search_ms": round(1e3 * s["split_seconds"]["search"], 1)}
        if "lattice" in s["split_seconds"]:       # a revision scoring with the lattice maps
            out[key]["lattice_ms"] = round(1e3 * s["split_seconds"]["lattice"], 1)
    return out


_QUALITY_ARGS = ["--good", "12", "--per-defect", "3", "--gates", "0.5", "--no-exact"]
_QUALITY_KEYS = ("image_auroc", "pixel_auroc", "image_f1", "pixel_f1", "false_positive_images", "refined_fraction",
                 "train_images", "bank_patches", "scratch", "dust", "stain", "missing_metal", "damaged_metal")


def _quality(tree: str) -> dict:
    """The figures of the tree's own bench/quality.py on the smaller set (quality.json left as it was)."""
    bench = os.path.join(tree, "bench")
    path = os.path.join(bench, "results", "quality.json")
    keep = open(path).read() if os.path.exists(path) else None
    try:
        subprocess.run([sys.executable, os.path.join(bench, "quality.py"), *_QUALITY_ARGS], cwd=bench,
                       env=dict(os.environ, PYTHONPATH=tree), check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            d = json.load(f)
    finally:
        if keep is not None:
            with open(path, "w") as f:
                f.write(keep)
    return {k: v for k, v in _flatten(d).items() if k.rsplit(".", 1)[-1] in _QUALITY_KEYS}


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quality", action="store_true", help="also compare bench/quality.py's figures")
    ap.add_argument("--name", default="ab_speed", help="record as bench/results/NAME.json")
    a = ap.parse_args()
    quality = {}
    ours_results = os.path.join(common.RESULTS, "speed.json")
    keep = open(ours_results).read() if os.path.exists(ours_results) else None
    runs = []
    try:
        with common.base_tree(a.base, "vi-ab-") as (tree, _tmp, rev, head):
            for _ in range(a.rounds):
                runs.append({"tree": f"base {rev}", **_run(tree)})
                runs.append({"tree": f"this tree (HEAD {head})", **_run(ROOT)})
            if a.quality:
                quality = {"base": _quality(tree), "head": _quality(ROOT)}
    finally:
        if keep is not None:             # speed.json stays the recorded run of bench/speed.py itself
            with open(ours_results, "w") as f:
                f.write(keep)
    command = f"python bench/ab_speed.py --base {a.base} --rounds {a.rounds}" + (" --quality" if a.quality else "") \
        + (f" --name {a.name}" if a.name != "ab_speed" else "")
    # "this tree" is the working tree: changes not yet committed are timed too, and the record says so
    dirty = [x for x in subprocess.run(["git", "status", "--porcelain", "--", "vi_stream", "bench"], cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout.splitlines()
             if "bench/results/" not in x]
    record = {"command": command, "base": rev, "head": head, "dirty": bool(dirty), "runs": runs}
    if quality:
        keys = sorted(set(quality["base"]) | set(quality["head"]))
        record["quality"] = {"args": " ".join(_QUALITY_ARGS), "figures": {k: [quality["base"].get(k), quality["head"].get(k)] for k in keys},
                             "identical": quality["base"] == quality["head"]}
    common.write(a.name, record)


if __name__ == "__main__":
    main()
