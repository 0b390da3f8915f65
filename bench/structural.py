"""The structural families of issue 28 on the TUNING split: settings side by side (tuning figures).

    python bench/structural.py [--per-family 16] [--variant LABEL k=v ...] [--no-write]

The set is bench/genset.py's (the tuning module line 7, its seeds), restricted to the tuning
families of bench/generalise.py (TUNING: the design's own eight and the four structural ones),
with ``--per-family`` defective images per family. Every variant (a label and ModelConfig
overrides, the default model first) is fitted on the same training images and scored on the same
pixels, and each family is evaluated by bench/generalise.py's code (image AUROC, pixel AUROC,
AUPRO, recall at the fitted threshold, detection limit on the contrast ladder). These are tuning
figures: design choices are made on them, so they claim nothing about generalisation.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import common
import generalise
import genset
import numpy as np
import setfiles

from vi_stream.evaluation import synthetic
from vi_stream.model import ModelConfig

DEFAULT_VARIANTS = (("default", ()),)


def run(set_dir: str, work: str, variants, families=generalise.TUNING) -> dict:
    out = []
    for label, items in variants:
        config = generalise._override(ModelConfig(), items)
        d = os.path.join(work, label)
        ours = generalise.run_ours(set_dir, d, config, families)
        ev = generalise.evaluate(set_dir, d, families, ours["threshold"])
        keys = ("image_auroc", "pixel_auroc", "aupro", "recall_at_threshold")
        for name, group in (("structural_mean", [f for f in families if f in synthetic.STRUCTURAL]),
                            ("others_mean", [f for f in families if f not in synthetic.STRUCTURAL])):
            if group:
                ev[name] = {k: round(float(np.mean([ev["per_family"][f][k] for f in group])), 4) for k in keys}
        out.append({"label": label, "overrides": list(items), **ours, **ev})
        print(label, json.dumps(ev["tuning_mean"]), file=sys.stderr)
    return {"variants": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default=os.path.join(common.HERE, ".work", "structural-768"))
    ap.add_argument("--work", default=os.path.join(common.HERE, ".work", "structural"))
    ap.add_argument("--per-family", type=int, default=16)
    ap.add_argument("--variant", nargs="+", action="append", metavar="LABEL [k=v ...]",
                    help="a variant: its label, then ModelConfig overrides (repeatable); the default model "
                         "is always run first")
    ap.add_argument("--no-default", action="store_true", help="only the variants given (pilot runs)")
    ap.add_argument("--families", nargs="+", choices=generalise.TUNING, help="only these families (pilot runs)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.set, setfiles.DESCRIPTION)) or \
            setfiles.load(a.set).get("per_family") != a.per_family:
        genset.build(a.set, per_family=a.per_family, families=generalise.TUNING)
    variants = ([] if a.no_default else list(DEFAULT_VARIANTS)) + [(v[0], tuple(v[1:])) for v in a.variant or ()]
    if a.no_default or a.families:
        a.no_write = True        # a pilot: the recorded run has the default model and every tuning family
    result = {"command": "python bench/structural.py" + (f" --per-family {a.per_family}" if a.per_family != 16 else "")
              + "".join(" --variant " + " ".join(v) for v in a.variant or ()),
              "set": {k: v for k, v in setfiles.load(a.set).items() if k != "contrasts"},
              "tuning_families": list(generalise.TUNING), "structural_families": list(synthetic.STRUCTURAL), **run(a.set, a.work, variants, a.families or generalise.TUNING)}
    if a.no_write:
        print(json.dumps(result, indent=1))
    else:
        common.write("structural", result)


if __name__ == "__main__":
    sys.exit(main())
