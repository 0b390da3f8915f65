"""The sealed split (issue 28): module lines, seeds and families that only a ``--final`` run draws.

    python bench/sealed.py --final [--again REASON] [--note HOW] [--config k=v ...]
                           [--peer-python PY --peer LABEL [k=v ...] ... [--peers-only]]

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
settings already run unless ``--again REASON`` says why (the reason is recorded too), and new
settings once the split has been scored on others unless ``--note HOW`` says how they were chosen
(recorded and reported beside their figures); a tree with
uncommitted changes under vi_stream/ or bench/ is refused (the commit would not describe the code)
unless ``--allow-dirty``. Results: bench/results/sealed.json, one entry per model settings under
``runs`` (per family and overall: image AUROC with its bootstrap 95% interval, pixel AUROC, AUPRO,
recall at each line's fitted threshold, false alarms per good image; and by CONTRAST_BANDS, image
AUROC and recall per band of the contrast a defect was drawn at) and one per peer variant under
``peers``; every image's score and threshold in bench/results/sealed/scores-<settings>.json (a
peer's in sealed/peer-<label>.json); the ledger is bench/results/sealed/ledger.json.
Scores of different lines' models are pooled as score / that model's threshold (each model's own
unit: 1 is its operating point).

The peer (``--peer-python PY --peer LABEL k=v ...``, as in bench/structural.py): each line's images
are written as a set folder under ``--work`` (bench/genset.py's layout); anomalib's PatchCore fits on
the training images our model fits on, scores the ones our model holds out to set its threshold,
and gets its threshold from them by our rule (at most one false alarm in ``false_alarm_one_in`` at
``false_alarm_confidence``, recorded with the peer), so both
sides are pooled across lines and counted at a threshold the same way. A peer does not choose our
design, so ``--peers-only`` adds peers to the record without running ours or writing the ledger.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
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
import setfiles
import structural

from vi_stream.errors import ConfigError
from vi_stream.evaluation import synthetic
from vi_stream.evaluation.metrics import RegionOverlap, auroc, auroc_of
from vi_stream.model import AnomalyModel, ModelConfig
from vi_stream.model.calibration import calibrated_threshold, calibration_indices

SEALED_LINES = (9101, 9203, 9307)
SEALED_BASE = 3_000_000_000        # seeds: SEALED_BASE + 10^7 x line index + 10^5 x split + i
SEALED_FAMILIES = generalise.HELD_OUT + synthetic.STRUCTURAL + synthetic.RESERVED
LEDGER = os.path.join("sealed", "ledger.json")   # under the results folder, beside sealed/scores-<settings>.json
BOOTSTRAP = 2000
CONTRAST_BANDS = (genset.CONTRAST[0], 0.35, 0.55, genset.CONTRAST[1])   # edges: faint, middling, strong
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


# Settings added to ModelConfig since the ledger's first entry, with their defaults: at its default such a
# setting is left out of the digest, so settings run before it existed keep their digest (and the ledger
# still refuses them a second run).
ADDED_SINCE_LEDGER = {"zoom": 1.0, "calibration_folds": 0, "false_alarm_confidence": 0.0, "lattice_spread": False}


def config_dict(config: ModelConfig) -> dict:
    """The settings as the digest reads them: each value in its field's type (lattice_weight=1 and
    lattice_weight=1.0 are the same settings, and get the same digest)."""
    defaults = ModelConfig()
    out = {}
    for k, v in dataclasses.asdict(config).items():
        if isinstance(getattr(defaults, k), float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if k in ADDED_SINCE_LEDGER and v == ADDED_SINCE_LEDGER[k]:
            continue
        if k == "lattice_spread" and not config.lattice:
            continue                  # moot with the lattice off: the same settings either way
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=os.path.dirname(common.HERE), capture_output=True, text=True,
                          check=True).stdout.strip()


@contextlib.contextmanager
def _locked(results: str):
    """One run at a time reads, changes and writes the ledger and sealed.json (a peer takes half an
    hour and may end while another run is writing)."""
    os.makedirs(os.path.join(results, "sealed"), exist_ok=True)
    with open(os.path.join(results, "sealed", ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load(path: str, empty):
    """The JSON at ``path``, ``empty`` when there is none; a file that does not parse is an error (it
    is never taken for an empty record, which would drop what it holds)."""
    if not os.path.exists(path):
        return empty
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as err:
            raise SystemExit(f"{path} does not parse ({err}): mend it or move it away; nothing was changed")


def _save(path: str, data) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)                  # a reader sees the old file or the new one, never half of one


def check_ledger(path: str, digest: str, again: str | None) -> list[dict]:
    runs = _load(path, [])
    before = [r for r in runs if r["settings_digest"] == digest]
    if before and not again:
        raise SystemExit(f"the sealed split was already run on these settings (commit {before[0]['commit']}, "
                         f"{before[0]['date']}): a second look is a choice made on it. Pass --again REASON "
                         "to run anyway; the reason is recorded")
    return runs


def update_record(results: str, sizes: dict, run: dict | None = None, peer: dict | None = None) -> None:
    """Adds our ``run`` (replacing one on the same settings) or a ``peer`` (replacing one of the same
    label) to sealed.json as it is on disk now."""
    path = os.path.join(results, "sealed.json")
    with _locked(results):
        record = _load(path, {})
        record.pop("machine", None)
        record = record or {"sizes": sizes, "lines": list(SEALED_LINES), "families": list(SEALED_FAMILIES),
                            "runs": [], "peers": []}
        if run is not None:
            record["runs"] = [r for r in record["runs"]
                              if r["run"]["settings_digest"] != run["run"]["settings_digest"]] + [run]
        if peer is not None:
            record["peers"] = [p for p in record["peers"] if p["label"] != peer["label"]] + [peer]
        _save(path, {"machine": common.machine(), **record})


def plan(train: int, good: int, per_family: int, config: ModelConfig) -> list[dict]:
    """Each line's images, in the order they are drawn: the training images (those the peer does not
    fit on marked: the ones our model holds out to set its threshold when it holds images out,
    ``calibration_folds=0``), the good test images, and per family its defective ones with the
    contrast each is drawn at (one generator for every line, so a run that draws the split for the
    peers alone draws the same images). The peer keeps holding out whatever our calibration: out of
    fold it would be fitted once per fold (30-45 minutes each here), so with folds our model's bank
    holds every training image and the peer's four in five of them (the report says so)."""
    rng = np.random.default_rng(SEALED_BASE)
    held = calibration_indices(train, dataclasses.replace(config, calibration_folds=0))
    lines = []
    for li, line in enumerate(SEALED_LINES):
        jobs = [("good", 1, i, None) for i in range(good)]
        jobs += [(f, 2 + fi, i, float(rng.uniform(*genset.CONTRAST)))
                 for fi, f in enumerate(SEALED_FAMILIES) for i in range(per_family)]
        lines.append({"index": li, "line": line, "train": list(range(train)), "held_out": held, "jobs": jobs})
    return lines


def draw(li: int, split: int, i: int, shape, fam: str = "good", contrast: float | None = None,
         v: synthetic.Variation | None = None) -> synthetic.Sample:
    return synthetic.module_image(shape, seed(li, split, i), () if fam == "good" else (fam,), contrast=contrast,
                                  variation=v)


def run(config: ModelConfig, train: int, good: int, per_family: int, size: int) -> tuple[dict, dict, list[dict]]:
    shape = (size, size)
    per_image, maps_good, cal = [], [], {}
    fam_maps: dict[str, list] = {f: [] for f in SEALED_FAMILIES}
    fit_s = score_s = 0.0
    for ln in plan(train, good, per_family, config):
        li, line = ln["index"], ln["line"]
        v = synthetic.Variation.draw(line)
        t0 = time.perf_counter()
        model = AnomalyModel.fit((draw(li, 0, i, shape, v=v).image for i in ln["train"]), config)
        fit_s += time.perf_counter() - t0
        thr = model.threshold
        cal[str(line)] = {"threshold": round(thr, 4), "lattice": model.meta.get("lattice", {})}
        for fam, split, i, contrast in ln["jobs"]:
            s = draw(li, split, i, shape, fam, contrast, v)
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


def write_sets(work: str, config: ModelConfig, train: int, good: int, per_family: int, size: int) -> list[str]:
    """Each line's images as a set folder in bench/genset.py's layout (what bench/peer_anomalib.py
    reads): ``train`` without the images our model holds out, ``calibration`` those (the peer's
    threshold is set on them by our rule), ``good`` and every family with its masks. A folder
    already written for the same sizes and holding-out rule is kept."""
    shape, dirs = (size, size), []
    for ln in plan(train, good, per_family, config):
        li, line = ln["index"], ln["line"]
        d = os.path.join(work, str(line))
        dirs.append(d)
        contrasts: dict[str, list] = {}
        for fam, _split, _i, c in ln["jobs"]:
            if fam != "good":
                contrasts.setdefault(fam, []).append(c)
        desc = {"size": size, "train": train, "good": good, "per_family": per_family, "line": line,
                "families": list(SEALED_FAMILIES), setfiles.CALIBRATION: len(ln["held_out"]),
                "held_out": ln["held_out"], "seeds": [seed(li, 0, 0), seed(li, 1, 0), seed(li, 2, 0)],
                "contrasts": contrasts}
        described = os.path.join(d, setfiles.DESCRIPTION)
        if os.path.exists(described) and setfiles.load(d) == json.loads(json.dumps(desc)):
            continue
        if os.path.exists(described):
            os.remove(described)            # a rewrite cut short leaves no description that looks whole
        os.makedirs(d, exist_ok=True)
        v = synthetic.Variation.draw(line)
        imgs = [draw(li, 0, i, shape, v=v).image for i in ln["train"]]
        setfiles.save_stack(d, "train", (im for i, im in enumerate(imgs) if i not in ln["held_out"]))
        setfiles.save_stack(d, setfiles.CALIBRATION, (imgs[i] for i in ln["held_out"]))
        by_family: dict[str, list] = {}
        for fam, split, i, contrast in ln["jobs"]:
            by_family.setdefault(fam, []).append(draw(li, split, i, shape, fam, contrast, v))
        for fam, samples in by_family.items():
            setfiles.save_stack(d, fam, (s.image for s in samples))
            if fam != "good":
                setfiles.save_stack(d, f"{fam}_mask", (s.mask for s in samples))
        setfiles.describe(d, desc)          # last: a folder without it is written again
    return dirs


def run_peer(python: str, dirs: list[str], label: str, options, one_in: int, confidence: float
             ) -> tuple[dict, list[dict]]:
    """One peer variant on every line's set (bench/structural.py's run_peer), its threshold set on
    the line's calibration images by our rule (vi_stream.model.calibration.calibrated_threshold, at
    most one false alarm in ``one_in`` at ``confidence``), its scores and maps pooled as ours are
    (score / that threshold) and evaluated by the same code. Returns the record's entry and every
    image's score."""
    runs = {str(setfiles.load(d)["line"]): structural.run_peer(python, d, os.path.join(d, "peer", label), options)
            for d in dirs}
    per_image, result = peer_result(dirs, label, one_in, confidence)
    out = {"label": label, "options": list(options), "runs": runs, "date": time.strftime("%Y-%m-%d %H:%M"), **result}
    print(label, json.dumps(out["overall"]), file=sys.stderr)
    return out, per_image


def peer_result(dirs: list[str], label: str, one_in: int, confidence: float) -> tuple[list[dict], dict]:
    """Every image's score of the peer ``label`` from its outputs in each line's set, with its line's
    threshold, and their evaluation (:func:`evaluate`)."""
    per_image, maps_good = [], []
    fam_maps: dict[str, list] = {f: [] for f in SEALED_FAMILIES}
    for d in dirs:
        desc = setfiles.load(d)
        li = SEALED_LINES.index(desc["line"])
        od = os.path.join(d, "peer", label)
        thr = calibrated_threshold(setfiles.outputs(od, setfiles.CALIBRATION)["scores"].tolist(), one_in,
                                   confidence=confidence)
        for split, fam in enumerate(["good", *SEALED_FAMILIES], start=1):    # plan()'s splits, in its order
            o = setfiles.outputs(od, fam)
            masks = setfiles.stack(d, f"{fam}_mask") if fam != "good" else [None] * len(o["scores"])
            for k, (sc, m, mask) in enumerate(zip(o["scores"], o["maps"], masks)):
                per_image.append({"line": desc["line"], "family": fam, "seed": seed(li, split, k),
                                  "contrast": desc["contrasts"][fam][k] if fam != "good" else None,
                                  "score": round(float(sc), 5), "threshold": round(thr, 5)})
                norm = (m.astype(np.float32) / np.float32(thr))
                if fam == "good":
                    maps_good.append((None, norm))      # evaluate() reads no mask of a good image
                else:
                    fam_maps[fam].append((np.asarray(mask), norm))
    return per_image, evaluate(per_image, maps_good, fam_maps)


def image_auroc(good: np.ndarray, bad: np.ndarray) -> float:
    """Image AUROC of defective images' scores ``bad`` against good images' ``good``."""
    return round(auroc_of(good, bad), 4)


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
                    "image_auroc": image_auroc(good, bad),
                    "image_auroc_95": bootstrap_auroc(good, bad),
                    "pixel_auroc": round(auroc(np.r_[np.zeros(good_pix.size, bool), lab], np.r_[good_pix, pix]), 4),
                    "aupro": round(ov.value(), 4), "recall_at_threshold": round(float((bad > 1).mean()), 3)}
    bad = np.concatenate(all_bad)
    overall = {"good_images": len(good), "defective_images": len(bad),
               "image_auroc": image_auroc(good, bad),
               "image_auroc_95": bootstrap_auroc(good, bad),
               "pixel_auroc_mean": round(float(np.mean([r["pixel_auroc"] for r in out.values()])), 4),
               "aupro_mean": round(float(np.mean([r["aupro"] for r in out.values()])), 4),
               "recall_at_threshold": round(float((bad > 1).mean()), 3),
               "false_alarms_per_good_image": round(float((good > 1).mean()), 3)}
    return {"per_family": out, "overall": overall, "by_contrast": by_contrast(per_image, good)}


def by_contrast(per_image: list[dict], good: np.ndarray, edges=CONTRAST_BANDS) -> dict:
    """Image AUROC against every good image (``good``: their scores over their threshold) and recall
    at the threshold per band of the contrast the defects were drawn at (the last band's upper edge
    included), pooled over families and per family: where along the contrast a model stops finding
    a family. A band without images is None; a contrast outside the edges is a ValueError (it would
    otherwise be counted nowhere)."""
    defective = [r for r in per_image if r["family"] != "good"]
    outside = [r["contrast"] for r in defective if not edges[0] <= r["contrast"] <= edges[-1]]
    if outside:
        raise ValueError(f"contrast {outside[0]} is outside the bands {edges[0]}-{edges[-1]}")
    pairs = list(zip(edges[:-1], edges[1:]))

    def bands(rows):
        out = []
        for k, (lo, hi) in enumerate(pairs):
            last = k == len(pairs) - 1
            bad = np.array([r["score"] / r["threshold"] for r in rows
                            if lo <= r["contrast"] < hi or (last and r["contrast"] == hi)])
            out.append(None if not len(bad) else {"images": len(bad), "image_auroc": image_auroc(good, bad),
                                                  "recall_at_threshold": round(float((bad > 1).mean()), 3)})
        return out

    families = list(dict.fromkeys(r["family"] for r in defective))
    return {"bands": [list(p) for p in pairs], "overall": bands(defective),
            "per_family": {f: bands([r for r in defective if r["family"] == f]) for f in families}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--final", action="store_true", help="draw and score the sealed split (nothing runs without)")
    ap.add_argument("--again", metavar="REASON", help="run although these settings were run before, and why")
    ap.add_argument("--note", metavar="HOW", help="how these settings were chosen; needed once the split has been "
                                                  "scored on other settings (recorded beside the figures)")
    ap.add_argument("--allow-dirty", action="store_true", help="run with uncommitted changes (recorded)")
    ap.add_argument("--config", nargs="*", default=[], help="ModelConfig overrides, key=value")
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--good", type=int, default=34)
    ap.add_argument("--per-family", type=int, default=10)
    ap.add_argument("--results", default=common.RESULTS, help="folder of the results and the ledger")
    ap.add_argument("--work", default=os.path.join(common.HERE, ".work", "sealed"),
                    help="where each line's set is written for the peers, and their outputs")
    ap.add_argument("--peer-python", help="interpreter of the anomalib environment (bench/setup_peer.sh)")
    ap.add_argument("--peer", nargs="+", action="append", metavar="LABEL [OPTION ...]",
                    help="a peer variant, as bench/structural.py's (repeatable; with --peer-python)")
    ap.add_argument("--peers-only", action="store_true",
                    help="run only the peers named (ours as recorded; no ledger entry: the peers choose nothing)")
    a = ap.parse_args(argv)
    if not a.final:
        ap.error("the sealed split is drawn by a --final run only (see the docstring); tuning uses "
                 "bench/structural.py and bench/generalise.py")
    structural.check_peer_args(ap, a)
    if a.peers_only and not a.peer:
        ap.error("--peers-only needs --peer")
    if a.note is not None and (a.peers_only or not a.note.strip()):
        ap.error("--note says how our settings were chosen: not with --peers-only, and not blank")
    try:                         # before the ledger is touched: a setting that cannot fit records nothing
        config = generalise._override(ModelConfig(), a.config).validate()
    except ConfigError as err:
        ap.error(str(err))
    sizes = {"size": a.size, "train": a.train, "good": a.good, "per_family": a.per_family}
    digest = settings_digest(config, sizes)
    record = _load(os.path.join(a.results, "sealed.json"), {})
    if record and record.get("sizes") != sizes:
        raise SystemExit(f"{os.path.join(a.results, 'sealed.json')} holds runs at sizes {record.get('sizes')}: "
                         "results at other sizes do not pool with them; pass another --results folder")
    if record and record.get("families") != list(SEALED_FAMILIES):
        raise SystemExit(f"{os.path.join(a.results, 'sealed.json')} holds runs on other families: they do not "
                         "pool with these; pass another --results folder")
    if a.peer:
        check_peer_python(a.peer_python)    # before anything is drawn or the ledger written
    if not a.peers_only:
        dirty = _git("status", "--porcelain", "--", "vi_stream", "bench").splitlines()
        dirty = [x for x in dirty if "bench/results/" not in x]
        if dirty and not a.allow_dirty:
            raise SystemExit("uncommitted changes under vi_stream/ or bench/: commit first (the run records the "
                             "commit), or pass --allow-dirty")
        ledger = os.path.join(a.results, LEDGER)
        entry = {"commit": _git("rev-parse", "HEAD"), "dirty": bool(dirty), "settings_digest": digest,
                 "config": config_dict(config), "sizes": sizes, "date": time.strftime("%Y-%m-%d %H:%M"),
                 "again": a.again}
        with _locked(a.results):
            runs = check_ledger(ledger, digest, a.again)
            earlier = [r["note"] for r in runs if r["settings_digest"] == digest and r.get("note")]
            if a.note or earlier:
                entry["note"] = a.note or earlier[-1]     # a rerun keeps how its settings were chosen
            if runs and not a.note and digest not in {r["settings_digest"] for r in runs}:
                raise SystemExit(f"the sealed split was scored on {len(runs)} other setting(s) before: figures of "
                                 "these settings are read beside what those showed, so say how they were chosen "
                                 "(--note HOW); it is recorded beside them")
            _save(ledger, runs + [entry])   # before the first image is drawn
        timing, result, per_image = run(config, a.train, a.good, a.per_family, a.size)
        with open(os.path.join(a.results, "sealed", f"scores-{digest}.json"), "w") as f:
            json.dump({"run": entry, "images": per_image}, f, indent=0)
        update_record(a.results, sizes, run={"command": "python bench/sealed.py --final" +
                                             (" --config " + " ".join(a.config) if a.config else ""),
                                             "run": entry, **timing, **result})
        print(json.dumps(result["overall"], indent=1))
    if a.peer:
        dirs = write_sets(a.work, config, a.train, a.good, a.per_family, a.size)
        calibration = {"calibration_every": config.calibration_every, "max_calibration": config.max_calibration,
                       "false_alarm_one_in": config.false_alarm_one_in,
                       "false_alarm_confidence": config.false_alarm_confidence}
        for label, *options in a.peer:     # each written as it ends: a later one failing loses none
            peer, per_image = run_peer(a.peer_python, dirs, label, tuple(options), config.false_alarm_one_in,
                                       config.false_alarm_confidence)
            entry = {**peer, "calibration": calibration}
            with _locked(a.results):
                _save(os.path.join(a.results, "sealed", f"peer-{label}.json"),
                      {"peer": {k: entry[k] for k in ("label", "options", "date", "calibration")}, "images": per_image})
            update_record(a.results, sizes, peer=entry)
    return 0


def check_peer_python(python: str) -> None:
    """The peer's script starts in ``python`` (its imports are the environment's test)."""
    try:
        p = subprocess.run([python, structural.PEER_SCRIPT, "--help"], capture_output=True, text=True, timeout=300)
    except OSError as err:
        raise SystemExit(f"--peer-python {python}: {err.strerror}")
    if p.returncode:
        raise SystemExit(f"--peer-python {python} cannot start {os.path.basename(structural.PEER_SCRIPT)} "
                         f"(bench/setup_peer.sh makes its environment): {(p.stderr.strip().splitlines() or ['?'])[-1]}")

if __name__ == "__main__":
    sys.exit(main())
