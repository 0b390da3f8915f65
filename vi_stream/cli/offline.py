"""``vi_stream train | score | evaluate | synth``: models and scores from folders of images.

The scorer (torch, numba) is imported by the commands when they run, never at parse time: the
parser is built for every command, ``vi_stream --help`` included.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Callable

from vi_stream.errors import InputError


def _progress_factory(enabled: bool) -> Callable[[int, str], Callable[[int], None]] | None:
    if not enabled:
        return None

    def make(total: int, desc: str):
        from tqdm import tqdm
        bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)
        return bar.update

    return make


CALIBRATION_ADVISED = 8   # calibration scores for a threshold near its false-alarm target
_MODEL_OPTIONS = (  # ModelConfig field, its type, help (its default is appended)
    ("tile", int, "tile size in px (multiple of 16)"),
    ("overlap", int, "tile overlap in px (multiple of 8)"),
    ("bank_size", int, "normal patches kept"),
    ("dim", int, "feature dimensions after PCA"),
    ("cells", int, "index cells"),
    ("batch_size", int, "tiles per backbone call at most (on CPU also about 0.3 MP per call)"),
    ("calibration_folds", int, "the threshold from every good image's score against the bank less its fold "
                               "(one image in n per fold); 0: hold out every --calibration-every-th image instead"),
    ("calibration_every", int, "with --calibration-folds 0, every n-th good image is held out to set the threshold"),
    ("false_alarm_one_in", int, "threshold for at most one false alarm per this many good images (at "
                                "--false-alarm-confidence)"),
    ("false_alarm_confidence", float, "the share of training sets whose threshold keeps to --false-alarm-one-in: "
                                      "the rule allows for how few good images set the threshold; 0: the target "
                                      "on average over training sets, the rule of model files from before it"),
    ("lattice_weight", float, "the share of the kNN map's median good-image maximum that each lattice map's 90th "
                              "percentile good-image maximum is scaled to"),
    ("zoom", float, "enlarge each image this many times before the backbone sees it, 1 to 3, at the square of "
                    "the cost; experimental: it found thin cuts better on the tuning line but not on the sealed "
                    "lines (docs/model.md)"),
    ("seed", int, "random seed"),
)


def _model_config(args: argparse.Namespace):
    from vi_stream.model import ModelConfig
    over = {k: getattr(args, k) for k, _t, _h in _MODEL_OPTIONS if getattr(args, k, None) is not None}
    for name in ("lattice", "lattice_spread"):
        if getattr(args, name, None) is not None:
            over[name] = getattr(args, name) == "on"
    return replace(ModelConfig(), **over).validate()


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from vi_stream.model import ModelConfig
    g = p.add_argument_group("model")
    for name, kind, text in _MODEL_OPTIONS:
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=kind,
                       help=f"{text} (default {getattr(ModelConfig(), name):g})")
    g.add_argument("--lattice", choices=("on", "off"),
                   help="fuse the lattice (cell-to-cell) score with the kNN map; an image without a lattice "
                        f"is scored by the kNN map alone (default {'on' if ModelConfig().lattice else 'off'})")
    g.add_argument("--lattice-spread", dest="lattice_spread", choices=("on", "off"),
                   help="read each lattice map over its spread on the good images at places that look alike "
                        "(brightness, edge strength): quiet places, such as a plain trace, are watched more "
                        f"closely than a pad's grain (default {'on' if ModelConfig().lattice_spread else 'off'})")


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="fit a model on a folder of good images")
    t.add_argument("--images", required=True, help="folder of good images")
    t.add_argument("--out", required=True, help="model file to write (.npz)")
    t.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1 ...")
    t.add_argument("--no-progress", action="store_true")
    _add_model_options(t)
    t.set_defaults(func=_train)

    s = sub.add_parser("score", help="score a folder of images")
    s.add_argument("--model", required=True)
    s.add_argument("--images", required=True)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--threshold", type=float, help="override the model's threshold (no refit)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_score)

    e = sub.add_parser("evaluate", help="image/pixel AUROC and F1 against ground-truth masks")
    e.add_argument("--model", required=True)
    e.add_argument("--images", required=True)
    e.add_argument("--masks", required=True, help="folder with <stem>_mask.png (images without one are good)")
    e.add_argument("--out", help="JSON report (default: <images>/../evaluation.json)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_evaluate)

    y = sub.add_parser("synth", help="write a synthetic set of module images (images/ + masks/)")
    y.add_argument("--out", required=True)
    y.add_argument("--good", type=int, default=10)
    y.add_argument("--per-defect", type=int, default=2)
    y.add_argument("--size", type=int, nargs=2, default=(768, 768), metavar=("H", "W"))
    y.add_argument("--kind", default="grey8", choices=("grey8", "grey16", "rgb"))
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--families", default="classic",
                   help="defect families: classic (the first five), all, or a comma list (see vi_stream.evaluation.synthetic)")
    y.add_argument("--line", type=int, help="draw a varied module line with this seed (default: the classic module)")
    y.add_argument("--contrast", type=float, help="defect contrast in (0, 1] (default 1)")
    y.set_defaults(func=_synth)


def _progress(args: argparse.Namespace):
    return _progress_factory(not getattr(args, "no_progress", True) and sys.stderr.isatty())


def _train(args: argparse.Namespace) -> int:
    config = _model_config(args)          # a bad setting is refused before the scorer is imported
    from vi_stream.evaluation import offline
    model = offline.train(args.images, args.out, config, args.device, _progress(args))
    m = model.meta
    split = (f"{m['good_images']} good images" if model.config.calibration_folds
             else f"{m['training_images']} training + {m['calibration_images']} calibration images")
    print(f"model {model.model_id}: {split}, {m['bank_patches']} of {m['training_patches']} patches kept, "
          f"threshold {model.threshold:.4g}, fit in {m['fit_seconds']:.1f} s -> {args.out}")
    if model.config.zoom != 1:
        print(f"zoom {model.config.zoom:g}: images are enlarged {model.config.zoom:g}x before the backbone "
              f"({model.config.zoom ** 2:.2g}x its work per image)")
    lat = m.get("lattice", {})
    spread = ", each map over its spread where the module looks alike" if "spread" in lat else ""
    print(f"lattice score: on, found on {lat['found']} of {lat['images']} good images{spread}" if lat.get("enabled")
          else f"lattice score: off ({lat.get('reason', 'off')})")
    rule = m["threshold_rule"]
    folds = rule.get("folds")
    how = (f"the scores of {rule['calibration_images']} good images against the bank less their fold "
           f"({folds} folds)" if folds else f"{rule['calibration_images']} held-out good images")
    conf = rule.get("confidence", 0.0)
    target = (f"at most one false alarm per {rule['false_alarm_one_in']} good images with {conf:.0%} confidence"
              if conf else f"one false alarm per {rule['false_alarm_one_in']} good images on average")
    print(f"threshold set for {target}, from {how}")
    if rule["calibration_images"] < CALIBRATION_ADVISED:
        more = (f"{CALIBRATION_ADVISED} good images give {CALIBRATION_ADVISED} scores" if folds else
                f"{CALIBRATION_ADVISED * model.config.calibration_every} good images give {CALIBRATION_ADVISED}")
        what = "scores" if folds else "held-out images"
        print(f"note: {rule['calibration_images']} {what} give a rough threshold (set high to keep the "
              f"target); {more} and a lower one", file=sys.stderr)
    return 0


def _score(args: argparse.Namespace) -> int:
    from vi_stream.evaluation import offline
    results = offline.score(args.model, args.images, args.out, args.threshold, args.device, _progress(args))
    n_bad = sum(r.is_anomalous for r in results)
    print(f"{len(results)} images scored, {n_bad} anomalous -> {os.path.join(args.out, 'scores.csv')}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from vi_stream.evaluation import offline
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.images)), "evaluation.json")
    report = offline.evaluate(args.model, args.images, args.masks, out, args.device, _progress(args))
    print(json.dumps(report, indent=2))
    print(f"-> {out}", file=sys.stderr)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from vi_stream.evaluation import offline, synthetic
    fams = {"classic": synthetic.DEFECT_TYPES, "all": synthetic.FAMILIES}.get(
        args.families, tuple(f.strip() for f in args.families.split(",") if f.strip()))
    try:
        img_dir, mask_dir = offline.write_synthetic(args.out, args.good, args.per_defect, tuple(args.size),
                                                    args.kind, args.seed, fams, args.line, args.contrast)
    except ValueError as err:
        raise InputError(str(err)) from err
    print(f"images -> {img_dir}, masks -> {mask_dir}")
    return 0
