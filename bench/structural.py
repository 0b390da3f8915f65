"""The structural families of issue 28 on the TUNING split: settings side by side (tuning figures).

    python bench/structural.py [--line 7] [--per-family 16] [--variant LABEL k=v ...] [--no-write]
                               [--peer-python PY --peer LABEL [k=v ...] ...]

The set is bench/genset.py's (a tuning module line, its seeds), restricted to the tuning
families of bench/generalise.py (TUNING: the design's own eight and the four structural ones),
with ``--per-family`` defective images per family. Every variant (a label and ModelConfig
overrides, the default model first) is fitted on the same training images and scored on the same
pixels, and each family is evaluated by bench/generalise.py's code (image AUROC, pixel AUROC,
AUPRO, recall at the fitted threshold, detection limit on the contrast ladder). These are tuning
figures: design choices are made on them, so they claim nothing about generalisation.

One line is one material, focus and noise: a choice that helps line 7 can hurt others (the zoom of
bench/history.md's seventeenth session did). TUNING_LINES are the lines a choice is tried on, each
recorded apart (line 7 in results/structural.json, line L in results/structural-lineL.json;
bench/report.py puts them side by side); line 7 has little sensor noise and some focus blur, 13
the strongest substrate texture and 16 the most sensor noise of the first lines drawn, picked by their properties
(synthetic.Variation), not by any score; no other line is taken (tests/test_sealed_split.py checks
that none is a line of the sealed split, which this script does not know of).

With ``--peer-python`` (bench/setup_peer.sh) each ``--peer LABEL OPTIONS`` runs anomalib's
PatchCore (bench/peer_anomalib.py with those options, written ``k=v``: ``norm=tflite``,
``coreset=0.05``, ``seed=1``, ``train=20``) on the same set, without the ladders (the peer has
no threshold to count them against), and puts its figures beside ours; a peer's outputs are reused
while newer than the set and made with the same options. A peer's fit takes 10-30 minutes here, so
the peers recorded in bench/results/structural.json on the same set (its description unchanged:
the same images, drawn again from the same seeds) are carried into the new record unless this run
names them again, each marked with the date of the run that made it (``carried_from``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

import common
import generalise
import genset
import setfiles

from vi_stream.evaluation import synthetic
from vi_stream.model import ModelConfig

DEFAULT_VARIANTS = (("default", ()),)
TUNING_LINES = (7, 13, 16)
PEER_SCRIPT = os.path.join(common.HERE, "peer_anomalib.py")   # run in the peer's environment (--peer-python)


def results_name(line: int) -> str:
    """The results file (under bench/results/, without .json) of a run on ``line``."""
    return "structural" if line == 7 else f"structural-line{line}"


def set_folder(line: int, root: str = os.path.join(common.HERE, ".work")) -> str:
    """Where the set of ``line`` is drawn (line 7's keeps the folder it always had)."""
    return os.path.join(root, "structural-768" if line == 7 else f"structural-768-line{line}")


def run(set_dir: str, work: str, variants, families=generalise.TUNING) -> dict:
    out = []
    for label, items in variants:
        config = generalise._override(ModelConfig(), items)
        d = os.path.join(work, label)
        ours = generalise.run_ours(set_dir, d, config, families)
        ev = generalise.evaluate(set_dir, d, families, ours["threshold"])
        ev.update(_means(ev, families))
        out.append({"label": label, "overrides": list(items), **ours, **ev,
                    "scores_over_threshold": scores_over_threshold(d, families, ours["threshold"])})
        print(label, json.dumps(ev["tuning_mean"]), file=sys.stderr)
    return {"variants": out}


def scores_over_threshold(out_dir: str, families, threshold: float) -> dict:
    """Every test image's score over the model's threshold (1 is its operating point), the good
    images' and each family's: the unit in which several lines' models are pooled (bench/report.py
    pools the tuning lines as bench/sealed.py pools the sealed ones)."""
    return {split: [round(float(v) / threshold, 4) for v in setfiles.outputs(out_dir, split)["scores"]]
            for split in ("good", *families)}


def run_peers(python: str, set_dir: str, work: str, peers, families=generalise.TUNING) -> list[dict]:
    """Each peer variant (a label and bench/peer_anomalib.py options) on the set, evaluated by the
    same code as ours (no threshold: recall is counted above the highest good image's score)."""
    out = []
    for label, options in peers:
        d = os.path.join(work, "peer", label)
        run = run_peer(python, set_dir, d, options)
        ev = generalise.evaluate(set_dir, d, families)
        out.append({"label": label, "options": list(options), "run": run, **ev, **_means(ev, families)})
        print(label, json.dumps(ev["tuning_mean"]), file=sys.stderr)
    return out


def run_peer(python: str, set_dir: str, out_dir: str, options) -> dict:
    """PEER_SCRIPT's outputs for the set in ``out_dir`` (reused while newer than the set and made
    with the same options, :func:`cached_run`), and its run.json."""
    run = cached_run(os.path.join(out_dir, "run.json"), set_dir, options)
    if run is None:
        flags = [x for o in options for x in ("--" + o.partition("=")[0], o.partition("=")[2])]
        subprocess.run([python, PEER_SCRIPT, set_dir, out_dir, "--no-ladder", *flags], check=True)
        with open(os.path.join(out_dir, "run.json")) as f:
            run = json.load(f)
    return run


def check_peer_args(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """``--peer`` needs ``--peer-python``, its label is a file name and its options are k=v (an
    argparse error otherwise)."""
    if a.peer and not a.peer_python:
        ap.error("--peer needs --peer-python (bench/setup_peer.sh makes the environment)")
    named = [p[0] for p in a.peer or () if "=" in p[0]]
    if named:
        ap.error(f"a peer is named first, then its options: --peer LABEL k=v ..., got the label {named[0]!r}")
    unsafe = [p[0] for p in a.peer or () if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", p[0])]
    if unsafe:      # the label names the peer's folder and its scores file
        ap.error(f"a peer's label is letters, digits, '.', '_' and '-' (it names files), got {unsafe[0]!r}")
    bad = [o for p in a.peer or () for o in p[1:] if "=" not in o]
    if bad:
        ap.error(f"peer options are k=v (norm=tflite, coreset=0.05, seed=1, train=20), got {' '.join(bad)}")


# bench/peer_anomalib.py's options as its run.json records them, and their defaults there
PEER_DEFAULTS = {"model": "patchcore", "norm": "imagenet", "coreset": 0.01, "seed": 0}   # train: all the set's
PEER_RECORDED = {"model": "model", "norm": "norm", "coreset": "coreset", "seed": "seed", "train": "train_images"}


def cached_run(run_json: str, set_dir: str, options) -> dict | None:
    """The peer's cached run (its run.json) when it is newer than the set and was made with these
    options, every one of them, the defaults of those not given included, else None (a label reused
    with other options would otherwise report the old run beside the new options)."""
    if not setfiles.newer_than_set(run_json, set_dir):
        return None
    with open(run_json) as f:
        run = json.load(f)
    want = dict(PEER_DEFAULTS, train=int(setfiles.stack(set_dir, "train").shape[0]))
    for o in options:
        k, _, v = o.partition("=")
        try:
            want[k] = json.loads(v)          # numbers as numbers (0.010 is 0.01); a word stays a word
        except ValueError:
            want[k] = v
    if set(want) - set(PEER_RECORDED):
        return None                          # an option the record cannot vouch for: run again
    return run if all(run.get(PEER_RECORDED[k]) == v for k, v in want.items()) else None


def carried_peers(previous: dict, result: dict) -> list[dict]:
    """The peers of the previous record (``previous``) that ``result`` does not run again, when both
    were made on the same set (the same description and, where both records have one, the same
    digest of its images) and every tuning family; each keeps the date of the run that made it."""
    if not previous or previous.get("set") != result["set"] or \
            previous.get("tuning_families") != result["tuning_families"]:
        return []
    if "set_digest" in previous and previous["set_digest"] != result.get("set_digest"):
        return []                 # the generator drew other images from the same seeds
    ran = {p["label"] for p in result.get("peers", [])}
    when = previous.get("machine", {}).get("date", "?")
    return [{**p, "carried_from": p.get("carried_from", when)} for p in previous.get("peers", [])
            if p["label"] not in ran]


def set_digest(set_dir: str) -> str:
    """sha256 of the set's images and masks (its .npy files, in name order): the description names
    the seeds, and a changed generator draws other images from them."""
    h = hashlib.sha256()
    for name in sorted(f for f in os.listdir(set_dir) if f.endswith(".npy")):
        h.update(name.encode())
        with open(os.path.join(set_dir, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _means(ev: dict, families) -> dict:
    return generalise.group_means(ev["per_family"],
                                  (("structural_mean", [f for f in families if f in synthetic.STRUCTURAL]),
                                   ("others_mean", [f for f in families if f not in synthetic.STRUCTURAL])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--line", type=int, default=TUNING_LINES[0], choices=TUNING_LINES,
                    help="the module line to tune on; each line's run is recorded apart")
    ap.add_argument("--set", help="where the set is drawn (default: bench/.work/structural-768[-lineL])")
    ap.add_argument("--work", help="where the outputs go (default: bench/.work/structural[-lineL])")
    ap.add_argument("--per-family", type=int, default=16)
    ap.add_argument("--variant", nargs="+", action="append", metavar="LABEL [k=v ...]",
                    help="a variant: its label, then ModelConfig overrides (repeatable); the default model "
                         "is always run first")
    ap.add_argument("--no-default", action="store_true", help="only the variants given (pilot runs)")
    ap.add_argument("--families", nargs="+", choices=generalise.TUNING, help="only these families (pilot runs)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--peer-python", help="interpreter of the anomalib environment (bench/setup_peer.sh)")
    ap.add_argument("--peer", nargs="+", action="append", metavar="LABEL [OPTION ...]",
                    help="a peer variant: its label, then bench/peer_anomalib.py options as k=v (repeatable; "
                         "with --peer-python)")
    a = ap.parse_args()
    check_peer_args(ap, a)
    a.set = a.set or set_folder(a.line)
    a.work = a.work or os.path.join(common.HERE, ".work", results_name(a.line))
    desc = setfiles.load(a.set) if os.path.exists(os.path.join(a.set, setfiles.DESCRIPTION)) else {}
    if desc.get("per_family") != a.per_family or desc.get("line") != a.line:
        genset.build(a.set, per_family=a.per_family, families=generalise.TUNING, line=a.line)
    variants = ([] if a.no_default else list(DEFAULT_VARIANTS)) + [(v[0], tuple(v[1:])) for v in a.variant or ()]
    if a.no_default or a.families:
        a.no_write = True        # a pilot: the recorded run has the default model and every tuning family
    result = {"command": "python bench/structural.py" + (f" --line {a.line}" if a.line != TUNING_LINES[0] else "")
              + (f" --per-family {a.per_family}" if a.per_family != 16 else "")
              + "".join(" --variant " + " ".join(v) for v in a.variant or ())
              + (" --peer-python PEER" + "".join(" --peer " + " ".join(p) for p in a.peer) if a.peer else ""),
              "set": {k: v for k, v in setfiles.load(a.set).items() if k != "contrasts"},
              "set_digest": set_digest(a.set),
              "tuning_families": list(generalise.TUNING), "structural_families": list(synthetic.STRUCTURAL), **run(a.set, a.work, variants, a.families or generalise.TUNING)}
    if a.peer:
        result["peers"] = run_peers(a.peer_python, a.set, a.work, [(p[0], tuple(p[1:])) for p in a.peer],
                                    a.families or generalise.TUNING)
    carried = carried_peers(common.read(results_name(a.line), machine=True), result)
    if carried:
        result["peers"] = result.get("peers", []) + carried
    if a.no_write:
        print(json.dumps(result, indent=1))
    else:
        common.write(results_name(a.line), result)


if __name__ == "__main__":
    sys.exit(main())
