"""Writes bench/README.md (and the manual's headline table, docs/benchmarks.md) from bench/results/*.json.

    python bench/report.py           # rewrite both
    python bench/report.py --check   # exit 1 if either is not what the results say (a test runs this)

Every figure in those two places comes from a results file, so none is typed twice;
what was tried and the history of the figures are hand-written in bench/history.md,
which is appended as it is.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys

from vi_stream.model.config import ModelConfig, saved_settings

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ROOT_README = os.path.join(os.path.dirname(HERE), "docs", "benchmarks.md")   # the manual's page with the headline
START, END = "<!-- bench:headline:start -->", "<!-- bench:headline:end -->"


def load(name: str) -> dict:
    try:
        with open(os.path.join(RESULTS, f"{name}.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _when(d: dict) -> str:
    m = d.get("machine", {})
    return f"{m.get('date', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _settings(overrides, config: dict | None = None) -> str:
    """A variant's settings as they differ from today's defaults, read from the whole config its record
    keeps: a default changed since (the lattice score, on by default since 2026-12-07) would make the
    overrides of an older record ("(defaults)" then) say what it was not. A record without its config
    shows its overrides. The lattice maps a fit computed are code, not a setting, but they change the
    scores as one does: a record with the lattice on names them (``lattice_maps``, common.recorded_config)
    and is shown with them where they are not today's; one made before records named them computed
    ``cut`` where today's fit computes ``thin`` (``lattice_maps=before-thin``), and one whose fit found
    the lattice on too few good images computed none (``lattice_maps=none``: the kNN map alone). So is
    the reach the lattice maps were spread over (``lattice_reach``; a record made before it: 0, as its
    fit had none)."""
    if config is None:
        return " ".join(overrides) or "(defaults)"
    config = dict(config)
    maps = config.pop("lattice_maps", None)
    reach = config.pop("lattice_reach", 0)
    then, now = saved_settings(config), ModelConfig()
    diff = [f"{k}={v!r}".replace(" ", "") for k, v in dataclasses.asdict(then).items()
            if k != "seed" and v != getattr(now, k)]
    if then.lattice and maps is None:
        diff.append("lattice_maps=before-thin")
    elif then.lattice and not maps:
        return " ".join(diff + ["lattice_maps=none"])
    elif then.lattice and tuple(maps) != lattice_maps():
        diff.append("lattice_maps=" + ",".join(maps))
    if then.lattice and reach != lattice_reach():
        diff.append(f"lattice_reach={reach}")
    return " ".join(diff) or "(defaults)"


def lattice_maps() -> tuple[str, ...]:
    """The maps today's fit computes (imported here: the rest of the report needs no numba)."""
    from vi_stream.model.lattice import MAPS
    return tuple(MAPS)


def lattice_reach() -> int:
    """The reach (px) today's fit spreads the lattice maps over."""
    from vi_stream.model.lattice import REACH
    return REACH


def _sealed_config(r: dict) -> dict:
    """A sealed run's config with the lattice maps and reach its line models were calibrated on (the
    ledger's config is the digest's, which names neither; each line model's lattice calibration does)."""
    models = r.get("line_models", {}).values()
    cals = [m["lattice"] for m in models if m.get("lattice", {}).get("enabled")]
    if cals:
        return {**r["run"]["config"], "lattice_maps": cals[0].get("maps"), "lattice_reach": cals[0].get("reach_px", 0)}
    if models and all("lattice" in m for m in models) and r["run"]["config"].get("lattice"):
        return {**r["run"]["config"], "lattice_maps": []}     # the setting on, no line model found its lattice
    return dict(r["run"]["config"])


def _code(settings: str) -> str:
    return "the defaults" if settings == "(defaults)" else f"`{settings}`"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def quality() -> str:
    d = load("quality")
    if not d:
        return ""
    rows = []
    for key, label in (("ours_gate_0.5", "vi_stream (default: gate 0.5)"), ("ours_gate_0.75", "vi_stream, gate 0.75"),
                       ("exact_nn_all_patches", "exact nearest neighbour over all training patches")):
        r = d.get(key)
        if r:
            det = sum(r["detected_per_type"].values())
            rows.append([label, r["image_auroc"], r["pixel_auroc"], f"{det}/{d['test_defective']}",
                         r["false_positive_images"], f"{1e3 * r['search_seconds_per_image']:.1f} ms"])
    exact = ("" if "exact_nn_all_patches" in d else " The exhaustive search over all training patches was "
             "skipped (`--no-exact`: about 140 s per image at 144 dimensions).")
    return (f"## Quality: `{d.get('command', 'python bench/quality.py')}` ({_when(d)})\n\n"
            f"{d['train_images']} training + {d['calibration_images']} calibration good images, "
            f"{d['test_good']} good and {d['test_defective']} defective test images (768², the project's "
            "own generator, five defect kinds). **This set is saturated** (image AUROC 1.000): it cannot "
            "tell a good design choice from a bad one any more and is kept as a regression check; quality "
            "is judged on the generalisation set below, beside anomalib." + exact + "\n\n"
            + _table(["scorer", "image AUROC", "pixel AUROC", "defects flagged at the fitted threshold",
                      "false-alarm images", "search per image"], rows) + "\n")


def _peer_cells(d: dict, kind: str, fam: str, keys) -> list:
    r = d.get(kind, {}).get("per_family", {}).get(fam)
    return [r[k] for k in keys] if r else ["not run"] * len(keys)


def generalise() -> str:
    d = load("generalise")
    if not d:
        return ""
    o, st = d["ours"], d["set"]
    peers = [k for k in ("patchcore", "padim") if k in d]
    rows = []
    for fam, r in o["per_family"].items():
        held = fam in d["held_out_families"]
        rows.append([fam + (" (held out)" if held else ""), r["image_auroc"], *_peer_cells(d, "patchcore", fam,
                     ["image_auroc"]), r["pixel_auroc"], *_peer_cells(d, "patchcore", fam, ["pixel_auroc"]),
                     r["aupro"], *_peer_cells(d, "patchcore", fam, ["aupro"]), r["recall_at_threshold"],
                     r["detection_limit"] if r["detection_limit"] is not None else "none"])
    for label, key in (("**held-out families, mean**", "held_out_mean"), ("tuning families, mean", "tuning_mean")):
        if key in o:
            m, pm = o[key], d.get("patchcore", {}).get(key, {})
            rows.append([label, m["image_auroc"], pm.get("image_auroc", ""), m["pixel_auroc"],
                         pm.get("pixel_auroc", ""), m["aupro"], pm.get("aupro", ""), m["recall_at_threshold"], ""])
    sides = [["vi_stream", o["config"]["dim"], o["fit_seconds"], o["score_mp_per_s"],
              o.get("held_out_overall_image_auroc", ""), o["held_out_mean"]["recall_no_false_alarm"],
              f"{o['held_out_recall_at_threshold']} ({o['false_alarms_per_good_image']} false alarms per good image)"]]
    for k in peers:
        p = d[k]
        sides.append([f"anomalib {p['anomalib']} {k}", p["n_features"] or "152 (no reduction)", p["fit_seconds"],
                      p["score_mp_per_s"], p.get("held_out_overall_image_auroc", ""),
                      p["held_out_mean"]["recall_no_false_alarm"], "(no threshold of its own here)"])
    peer_note = ("" if peers else f" **Peer**: {d.get('peers', 'not run')}.")
    return (f"## Generalisation, beside anomalib: `{d['command']}` ({_when(d)})\n\n"
            f"The set (`bench/genset.py`): module line {st['line']}, {st['size']}², {st['train']} good training "
            f"images, {st['good']} good test images, {st['per_family']} defective images per family at contrasts "
            f"drawn in {st['contrast_range']}, a ladder of {st['ladder']} defects per family at "
            f"{st['ladder_contrasts']}. Tuned on: {', '.join(d['tuning_families'])}. Held out (no design choice "
            f"looked at them): {', '.join(d['held_out_families'])}. vi_stream's threshold: "
            f"{_rule(o['config'])} ({o['config']['false_alarm_one_in']} good images), from "
            + (f"every training image scored out of fold ({o['config']['calibration_folds']} folds); "
               if o['config'].get('calibration_folds') else
               f"every {o['config']['calibration_every']}th training image held out; ") +
            f"threshold {o['threshold']}.{peer_note} Both sides' metrics are computed by the same "
            "code from their maps; the peer runs in its own environment (`bench/setup_peer.sh`) on the same "
            "pixels. Timings of the peer were taken while other work shared the machine (its fit and speed are "
            "indicative; the issue's quiet run read 1.0 MP/s and 783 s for PatchCore).\n\n"
            + _table(["side", "dimensions", "fit s", "scoring MP/s", "held-out image AUROC (all held-out images)",
                      "held-out recall, no false alarm (oracle threshold)", "held-out recall at own threshold"],
                     sides) + "\n\nPer family (vi_stream | PatchCore):\n\n"
            + _table(["family", "image AUROC", "PatchCore", "pixel AUROC", "PatchCore", "AUPRO", "PatchCore",
                      "recall at threshold", "detection limit"], rows) + "\n")


def _structural_names() -> list[str]:
    """The structural runs recorded, one per tuning line: line 7's first, the others by line."""
    names = [f[:-5] for f in os.listdir(RESULTS) if re.fullmatch(r"structural(-line\d+)?\.json", f)]
    return sorted(names, key=lambda n: -1 if n == "structural" else int(n[len("structural-line"):]))


def structural_lines() -> str:
    """Each variant's tuning figures on every tuning line that ran it, side by side: a choice is
    taken when it holds on all of them, not on one."""
    runs = [load(n) for n in _structural_names()]
    if len(runs) < 2:
        return ""
    labels = list(dict.fromkeys(v["label"] for d in runs for v in d["variants"]))
    lines = [d["set"]["line"] for d in runs]
    rows = []
    for label in labels:
        by_line = [next((v for v in d["variants"] if v["label"] == label), None) for d in runs]
        settings = next(_settings(v["overrides"], v.get("config")) for v in by_line if v is not None)
        cells = ["–" if v is None else f"{v['structural_mean']['image_auroc']} / {v['others_mean']['image_auroc']} / "
                 f"{v['false_alarms_per_good_image']}" for v in by_line]
        rows.append([label, settings] + cells + _pooled(by_line, runs[0].get("structural_families", [])))
    return ("## Structural families across the tuning lines\n\n**Tuning figures**, from the sections above "
            "(one per line, `bench/structural.py --line L`): per line, the structural families' mean image "
            "AUROC / the other tuning families' mean image AUROC / false alarms per good image at the fitted "
            "threshold; a variant is compared by its label. Then the lines pooled as the sealed split pools its "
            "lines (each image's score over its line's threshold): image AUROC of every defective image against "
            "every good one, of the structural families' alone, recall at the threshold and false alarms per "
            "good image. Pooling asks more than each line's ranking: a model whose thresholds sit at different "
            "places on different lines ranks worse pooled. A choice is taken when it holds on every line and "
            "pooled: each line is another material, focus and noise.\n\n"
            + _table(["variant", "settings"] + [f"line {n}" for n in lines]
                     + ["pooled image AUROC", "pooled, structural", "pooled recall at threshold",
                        "pooled false alarms per good image"], rows) + "\n")


def _pooled(by_line: list, structural_families) -> list:
    """The lines pooled (every image's score over its line's threshold, as recorded by
    bench/structural.py): image AUROC of all defective images and of the structural families'
    against all good ones, recall at the threshold, false alarms per good image; dashes unless the
    variant ran, with those scores, on every line."""
    if any(v is None or "scores_over_threshold" not in v for v in by_line):
        return ["(not on every line)", "", "", ""]
    from vi_stream.evaluation.metrics import auroc_of   # here: the rest of the report needs no numpy
    good = [x for v in by_line for x in v["scores_over_threshold"]["good"]]

    def pooled(which):
        bad = [x for v in by_line for f, xs in v["scores_over_threshold"].items() if f != "good" and which(f) for x in xs]
        return bad, round(auroc_of(good, bad), 4)
    bad, every = pooled(lambda f: True)
    return [every, pooled(lambda f: f in structural_families)[1], round(sum(x > 1 for x in bad) / len(bad), 3),
            round(sum(x > 1 for x in good) / len(good), 3)]


def structural(name: str = "structural") -> str:
    d = load(name)
    if not d:
        return ""
    st, variants = d["set"], d["variants"]
    fams = list(variants[0]["per_family"])
    head = ["family"] + [f"{v['label']}: image AUROC / pixel AUROC / AUPRO / recall at threshold" for v in variants]

    def cells(r):
        return f"{r['image_auroc']} / {r['pixel_auroc']} / {r['aupro']} / {r['recall_at_threshold']}"
    rows = [[f + (" (structural)" if f in d.get("structural_families", []) else "")]
            + [cells(v["per_family"][f]) for v in variants] for f in fams]
    for key, label in (("structural_mean", "**structural families, mean**"), ("others_mean", "the other tuning families, mean")):
        if key in variants[0]:
            rows.append([label] + [cells(v[key]) for v in variants])
    sides = [[v["label"], _settings(v["overrides"], v.get("config")), v["fit_seconds"], v["score_mp_per_s"],
              v["threshold"], v["false_alarms_per_good_image"]] for v in variants]
    return (f"## Structural families, tuning split, line {st['line']}: `{d['command']}` ({_when(d)})\n\n"
            f"**Tuning figures** (design choices are made on them; they claim nothing about generalisation). "
            f"Module line {st['line']}, {st['size']}², {st['train']} good training images, {st['good']} good test "
            f"images, {st['per_family']} defective images per family at contrasts drawn in {st['contrast_range']} "
            "(for lattice_warp and misplaced_pad's displaced pads the contrast is the displacement: (2 + 8 c) px at "
            "768). Each variant is fitted on the same images and scored on the same pixels. Fit seconds and MP/s "
            "are as the run went on a VM shared with other work (not speeds: those are compared interleaved in "
            "\"Speed levers\").\n\n"
            + _table(["variant", "settings", "fit s", "scoring MP/s", "threshold", "false alarms per good image"], sides)
            + "\n\n" + _table(head, rows) + "\n" + _structural_peers(d, variants, fams))


def _structural_peers(d: dict, variants: list, fams: list) -> str:
    """The peer (anomalib PatchCore) variants beside ours on the same set; recall is counted above
    the highest good image's score on both sides (the peer has no calibrated threshold)."""
    peers = d.get("peers") or []
    if not peers:
        return ""
    sides = variants + peers

    def cells(r):
        return f"{r['image_auroc']} / {r['pixel_auroc']} / {r['aupro']} / {r['recall_no_false_alarm']}"
    rows = [[f] + [cells(v["per_family"][f]) for v in sides] for f in fams]
    for key, label in (("structural_mean", "**structural families, mean**"), ("others_mean", "the other tuning families, mean")):
        if all(key in v for v in sides):
            rows.append([label] + [cells(v[key]) for v in sides])
    runs = [[p["label"], " ".join(p["options"]) or "(defaults)", p["run"]["norm"], p["run"]["coreset"], p["run"]["seed"],
             p["run"]["train_images"], p["run"]["bank"], p["run"]["fit_seconds"], p["run"]["score_mp_per_s"],
             p.get("carried_from", d["machine"]["date"])] for p in peers]
    return ("\nThe peer on the same set: anomalib's PatchCore (bench/peer_anomalib.py: taps blocks.2 + blocks.4 of "
            "the same EfficientNet-Lite0 weights, full-resolution input, greedy coreset, 9-neighbour reweighting, no "
            "lattice score, no calibrated threshold). Ours has taps 2, 4 and 7, a projection to 144 dimensions, "
            "a uniform bank of 120,000 patches, σ 6 smoothing and, in the lattice variant, the lattice maps. "
            "Recall here is counted above the highest good image's score, on both sides. The peer's fit seconds "
            "and MP/s are as each run went on the shared VM (the first beside other work), not speeds.\n\n"
            + _table(["peer", "options", "normalisation", "coreset", "seed", "training images", "bank", "fit s",
                      "scoring MP/s", "run on"], runs) + "\n\n"
            + _table(["family"] + [f"{v['label']}: image AUROC / pixel AUROC / AUPRO / recall, no false alarm"
                                   for v in sides], rows) + "\n")


TARGETS = (("overall image AUROC >= 0.99", lambda o, f, p: o["image_auroc"] >= 0.99),
           ("pixel AUROC >= 0.99 (mean of the families)", lambda o, f, p: o["pixel_auroc_mean"] >= 0.99),
           ("AUPRO >= 0.95 (mean of the families)", lambda o, f, p: o["aupro_mean"] >= 0.95),
           ("lattice_warp image AUROC >= 0.95", lambda o, f, p: f.get("lattice_warp", {}).get("image_auroc", 0) >= 0.95),
           ("recall >= 0.95 at the threshold, <= 1 false alarm in 20 good images",
            lambda o, f, p: o["recall_at_threshold"] >= 0.95 and o["false_alarms_per_good_image"] <= 0.05),
           ("every family at least the best peer's image AUROC, within its interval",
            lambda o, f, p: None if not all(_best(p, k) for k in f) else
            all(r["image_auroc_95"][1] >= _best(p, k)["per_family"][k]["image_auroc"] for k, r in f.items())))


def _best(peers: list[dict], family: str | None = None) -> dict | None:
    """The peer variant with the highest image AUROC on ``family`` (overall when None), of those run
    on it; None when none was."""
    have = [p for p in peers if family is None or family in p.get("per_family", {})]
    key = (lambda p: p["overall"]["image_auroc"]) if family is None else \
        (lambda p: p["per_family"][family]["image_auroc"])
    return max(have, key=key, default=None)


def _auroc95(r: dict) -> str:
    return f"{r['image_auroc']} ({r['image_auroc_95'][0]}–{r['image_auroc_95'][1]})"


def sealed() -> str:
    d = load("sealed")
    if not d or not (d.get("runs") or d.get("peers")):
        return ""
    peers = d.get("peers", [])
    out = [f"## Sealed split (`python bench/sealed.py --final`)\n\n"
           f"Module lines {', '.join(map(str, d['lines']))} (one model each, on {d['sizes']['train']} good images less those it "
           "holds out to set its threshold, one in five, when it holds images out; with folds, on all of them, every "
           "one scored out of fold), "
           f"{d['sizes']['size']} px; image AUROC with its bootstrap 95% interval; scores pooled across lines as "
           "score / that line's threshold. The peer fits on four in five of the training images and its threshold is "
           "set by our rule on the fifth (the images our model holds out when it holds images out: out of fold the "
           "peer would be fitted once per fold). "
           "Every image's score: `bench/results/sealed/`.\n"]
    if peers:
        out.append(_table(["peer", "options", "overall image AUROC (95%)", "pixel AUROC", "AUPRO",
                           "recall at threshold (its rule)", "false alarms per good image", "run on"],
                          [[p["label"], " ".join(p["options"]) or "defaults", _auroc95(p["overall"]),
                            p["overall"]["pixel_auroc_mean"], p["overall"]["aupro_mean"],
                            f"{p['overall']['recall_at_threshold']} ({_rule(p.get('calibration', {}))})",
                            p["overall"]["false_alarms_per_good_image"], p["date"]]
                           for p in peers]) + "\n")
    for r in d["runs"]:
        o, run, fam = r["overall"], r["run"], r["per_family"]
        rows = []
        for f, x in fam.items():
            best = _best(peers, f)
            rows.append([f, x["images"], _auroc95(x), x["pixel_auroc"], x["aupro"], x["recall_at_threshold"]]
                        + ([f"{_auroc95(best['per_family'][f])} ({best['label']})" if best else "–"] if peers else []))
        best = _best(peers)
        rows.append(["**overall**", o["defective_images"], _auroc95(o), o["pixel_auroc_mean"], o["aupro_mean"],
                     o["recall_at_threshold"]] + ([f"{_auroc95(best['overall'])} ({best['label']})"] if best else []))
        met = [f"{name}: {({True: 'met', False: 'not met', None: 'no peer run yet'})[test(o, fam, peers)]}"
               for name, test in TARGETS]
        out.append(f"### `{r['command']}` ({run['date']})\n\n"
                   f"Commit {run['commit'][:10]}{' (with uncommitted changes)' if run['dirty'] else ''}, settings "
                   f"{run['settings_digest']}{', run again: ' + run['again'] if run.get('again') else ''}"
                   f"{'; how these settings were chosen: ' + run['note'] if run.get('note') else ''}; "
                   f"{o['good_images']} good test images, false alarms per good image "
                   f"{o['false_alarms_per_good_image']}. Issue 28's targets: " + "; ".join(met) + ".\n\n"
                   + _table(["family", "defective images", "image AUROC (95%)", "pixel AUROC", "AUPRO",
                             "recall at threshold"] + (["best peer: image AUROC (95%)"] if peers else []), rows) + "\n")
    bands = _by_contrast(d["runs"], peers)
    return "\n".join(out + ([bands] if bands else []))


def _band_cells(bands: list, key: str | None = None) -> str:
    """Each band as image AUROC (recall at the threshold), or its ``key`` alone."""
    return " / ".join("–" if b is None else str(b[key]) if key else f"{b['image_auroc']} ({b['recall_at_threshold']})"
                      for b in bands)


def _by_contrast(runs: list[dict], peers: list[dict]) -> str:
    """Image AUROC and recall per band of the contrast the defects were drawn at, for each of our
    settings and, per family, the peer variant the main table names (the highest image AUROC on the
    whole family; "–" when that variant's record has no bands)."""
    runs = [r for r in runs if r.get("by_contrast")]
    if not runs:
        return ""
    edges = runs[0]["by_contrast"]["bands"]
    if any(x["by_contrast"]["bands"] != edges for x in runs + [p for p in peers if p.get("by_contrast")]):
        raise SystemExit("sealed.json: records split by different bands of contrast do not compare; run them again")
    names = [_code(_settings((), _sealed_config(r))) for r in runs]

    def peer_cell(best, pick):
        if best is None:
            return "–"
        return f"{_band_cells(pick(best))} ({best['label']})" if best.get("by_contrast") else f"– ({best['label']})"

    rows = []
    for fam in list(runs[0]["by_contrast"]["per_family"]) + [None]:
        pick = (lambda x: x["by_contrast"]["overall"]) if fam is None else (lambda x: x["by_contrast"]["per_family"][fam])
        rows.append([fam or "**overall**", _band_cells(pick(runs[0]), "images")] + [_band_cells(pick(r)) for r in runs]
                    + ([peer_cell(_best(peers, fam), pick)] if peers else []))
    bands = ", ".join(f"{lo}–{hi}" for lo, hi in edges)
    order = "faint / middling / strong" if len(edges) == 3 else "from the faintest band to the strongest"
    return (f"### By the contrast a defect was drawn at\n\nEach band of contrast ({bands}; {order}): image AUROC "
            "against every good image, then in brackets the recall at the threshold (the same images on every side); a "
            "defect at contrast c is blended into the module at c of its full strength. The peer column is, per "
            "family, the variant the table above names (the highest image AUROC on the whole family); overall, "
            "the variant with the highest overall image AUROC.\n\n"
            + _table(["family", "defective images"] + names + (["best peer"] if peers else []), rows) + "\n")


def levers() -> str:
    d = load("levers")
    if not d:
        return ""
    rows, peer = [], False
    for size, per in d["per_size"].items():
        for label, r in per.items():
            if label == "patchcore":        # the peer's turn in the same rounds (bench/peer_speed.py)
                peer = True
                settings = (f"anomalib {r['anomalib']} PatchCore, {r['norm']} normalisation, coreset {r['coreset']} "
                            f"of {r['train_images']} images: bank {r['bank']}")
                parts = ""
            else:
                settings = _settings(r["overrides"], r.get("config"))
                parts = ", ".join(f"{k} {v}" for k, v in r["parts_ms"].items())
            rows.append([f"{size}²", label, settings, r["mp_per_s"], f"{r['mp_per_s_range'][0]}–{r['mp_per_s_range'][1]}",
                         r["time_vs_default"], r.get("times_peer", ""), parts])
    return (f"## Speed levers, interleaved: `{d['command']}` ({_when(d)})\n\n"
            f"One model per setting, fitted on the same {d['train']} good images of line 7; each round every "
            f"model scores the same image once, in turn ({d['rounds']} rounds), so the VM's drift falls on all "
            "alike: compare the per-round time ratios, not the MP/s across sections. Their quality: "
            "\"Structural families\" (tuning figures)."
            + (" The peer (anomalib's PatchCore, bench/peer_speed.py in its own process) takes its turn in every "
               "round; \"times the peer\" is the median per-round ratio of the peer's time to the variant's. The "
               "peer fits on as many of the same images as keep its patches within the command's cap (its greedy "
               "coreset takes minutes per 100,000 patches here); its smaller bank can only make its search "
               "faster." if peer else "") + "\n\n"
            + _table(["size", "variant", "settings", "MP/s (median)", "range", "time vs default (median ratio)",
                      "times the peer (median ratio)", "parts (ms, medians)"], rows) + "\n")


def runtime() -> str:
    d = load("runtime")
    if not d:
        return ""
    rows = [[name, r["seconds_per_768_image"], r["time_vs_torch"], f"{r['time_vs_torch_range'][0]}–{r['time_vs_torch_range'][1]}",
             " / ".join(map(str, r["tap_relative_error"]))] for name, r in d["runtimes"].items()]
    p = d["scoring_768"]
    return (f"## Backbone runtime, interleaved: `{d['command']}` ({_when(d)})\n\n"
            f"The trunk (taps {d['taps']}) over the tiles of one 768² image ({d['tiles_per_image']} tiles, "
            f"{d['tiles_per_call']} per call) in torch and in onnxruntime {d['onnxruntime']} (fp32, and int8 by static "
            "quantisation calibrated on training tiles); relative error of each tap against torch.\n\n"
            + _table(["runtime", "backbone s per 768² image (median)", "time vs torch (median ratio)", "range",
                      "tap relative error"], rows)
            + f"\n\nWhole scoring of a 768² image, the trunk's calls in torch or in the fp32 session: torch "
              f"{p['torch']['seconds']} s ({p['torch']['mp_per_s']} MP/s), onnxruntime {p['onnxruntime fp32']['seconds']} s "
              f"({p['onnxruntime fp32']['mp_per_s']} MP/s), time vs torch {p['time_vs_torch']} (range "
              f"{p['time_vs_torch_range'][0]}–{p['time_vs_torch_range'][1]}).\n")


def trunk_calls() -> str:
    d = load("trunk_calls")
    if not d:
        return ""
    rows = [[f"{r['size']}²", r["way"], f"{r['calls']}, up to {r['call_shape'][0]} of {r['call_shape'][1]}x{r['call_shape'][2]} each",
             f"{r['pixels_vs_image']}x", f"{r['ms']} ({r['ms_range'][0]}–{r['ms_range'][1]})",
             f"{r['vs_tiles']} ({r['vs_tiles_range'][0]}–{r['vs_tiles_range'][1]})"] for r in d["rows"]]
    return (f"## The trunk's calls: `{d['command']}` ({_when(d)})\n\n"
            f"The trunk alone, as scoring runs it (traced, frozen and optimised; one trunk per way; one-channel "
            f"input), over one image's pixels cut four ways, {d['rounds']} rounds, each round every way in a shuffled "
            f"order: the default tiles ({d['tiles_per_call']} per call), the whole image in one call, bands {d['band']} "
            f"rows tall as wide as the image (at most {d['band_width']} px, then side by side; overlapping as "
            "tiles do), and the tiles one per call. Time per image and the per-round ratio to the default tiles "
            "(medians and ranges). Timing only.\n\n"
            + _table(["size", "way", "calls", "pixels through the trunk / image's", "ms per image", "time vs tiles"], rows) + "\n")


def dims() -> str:
    d = load("dims")
    if not d:
        return ""
    rows = [[k, r["mp_per_s"], f"{r['mp_per_s_range'][0]}–{r['mp_per_s_range'][1]}",
             _pct(r["share_outside_backbone"]), r[next(x for x in r if x.startswith("time_vs_"))]]
            for k, r in d["per_dim"].items()]
    first = next(iter(d["per_dim"]))
    return (f"## Dimensions kept against speed: `{d['command']}` ({_when(d)})\n\n"
            f"{d['image']}, every model scoring the same image in turn, 9 rounds.\n\n"
            + _table(["dimensions", "MP/s (median)", "range", "share outside the backbone",
                      f"time vs {first} (median ratio)"], rows) + "\n")


def speed() -> str:
    d = load("speed")
    if not d:
        return ""
    rows = [["fit", f"{d['fit']['images']} good {d['fit']['size']}", f"{d['fit']['seconds']} s", "", ""]]
    for key in ("score_768", "score_2048"):
        s = d[key]
        lo, hi = s["outside_backbone_fraction_range"]
        split = ", ".join(f"{k} {1e3 * v:.1f}" for k, v in s["split_seconds"].items())
        rows.append([f"score {key.split('_')[1]}²", s["model_fitted_on"],
                     f"{s['megapixels_per_s']} MP/s ({1e3 * s['seconds_per_image']:.0f} ms/image)",
                     f"{_pct(s['outside_backbone_fraction'])} (calls {_pct(lo)}–{_pct(hi)})", split])
    return (f"## Speed: `{d.get('command', 'python bench/speed.py')}` ({_when(d)})\n\n"
            "Scoring time is the median of 15 calls; the share outside the backbone is the median of the "
            "calls' shares (this VM's speed drifts by ±30% between runs, so shares within one call are the "
            "fair comparison).\n\n"
            + _table(["what", "on", "result", "share outside the backbone", "parts (ms, medians)"], rows) + "\n")


def ab_speed(name: str = "ab_speed") -> str:
    d = load(name)
    if not d:
        return ""
    lat = all("lattice_ms" in r["score_768"] for r in d["runs"])
    parts = "backbone / search / lattice ms" if lat else "backbone / search ms"

    def ms(s: dict) -> str:
        return f"{s['backbone_ms']} / {s['search_ms']}" + (f" / {s['lattice_ms']}" if lat else "")
    rows = []
    for r in d["runs"]:
        a, b = r["score_768"], r["score_2048"]
        rows.append([r["tree"], f"{r['fit_seconds']} s", f"{a['megapixels_per_s']} MP/s, {_pct(a['outside_backbone_fraction'])}",
                     ms(a), f"{b['megapixels_per_s']} MP/s, {_pct(b['outside_backbone_fraction'])}", ms(b)])
    return (f"## Before and after a change: `{d['command']}` ({_when(d)})\n\n"
            f"`bench/speed.py` of revision {d['base']} and of this tree"
            + (" (with changes not yet committed)" if d.get("dirty") else "") + ", run in turn so both see the same "
            "phases of the VM. Compare the shares outside the backbone; the MP/s move with the VM.\n\n"
            + _table(["tree", "fit 40 images", "768²: speed, share outside backbone", f"768²: {parts}",
                      "2048²: speed, share", f"2048²: {parts}"], rows) + "\n" + _ab_quality(d))


def _ab_quality(d: dict) -> str:
    q = d.get("quality")
    if not q:
        return ""
    rows = [[k, base, head, "same" if base == head else "differs"] for k, (base, head) in q["figures"].items()]
    verdict = "identical" if q["identical"] else "NOT identical"
    return (f"\nQuality, each tree's `bench/quality.py {q['args']}`: {verdict}.\n\n"
            + _table(["figure", f"base {d['base']}", f"this tree {d['head']}", ""], rows) + "\n")


def search() -> str:
    d = load("search")
    if not d:
        return ""
    rows = []
    for key, label in (("ours", "ours: medoid tree, own cell; 4 cells above the gate"),
                       ("faiss_ivf_fp16_two_stage", "faiss IVF fp16, same cells: nprobe 1, then 4 above the gate"),
                       ("faiss_ivf_fp16_nprobe4_all", "faiss IVF fp16, same cells: nprobe 4 for every patch"),
                       ("exact_same_bank", "exact search of the same bank")):
        r = d[key]
        t = (f"{r['ms_per_image_median']} ms ({r['ms_range'][0]}–{r['ms_range'][1]}), "
             f"{r['time_vs_ours']}x ours") if "ms_per_image_median" in r else "(reference)"
        rows.append([label, t, r["image_auroc"], r["pixel_auroc"], _pct(r["above_gate_more_than_1pct_off"])])
    return (f"## Search: `{d['command']}` ({_when(d)})\n\n"
            f"The same bank ({d['bank']} patches, {d['dim']} dimensions, {d['cells']} cells) and the patches of "
            f"{d['images']} test images ({d['patches_per_image']} each), methods interleaved image by image, "
            f"{d['rounds']} rounds, {d['threads']} threads; time per image as median (min–90th percentile). "
            "faiss-cpu is the well-kept library we would rather use; at these sizes its IVF scan runs one "
            "query at a time over short lists, and ours (four patches share each pass over a list, in "
            "registers) stays faster, so the hand-written search is kept.\n\n"
            + _table(["search", "time per image", "image AUROC", "pixel AUROC",
                      "patches above the gate >1% over the exact distance"], rows) + "\n")


def false_alarms() -> str:
    """Each record of bench/false_alarms.py (one per module drawn): good images over the threshold."""
    names = sorted((n[:-5] for n in os.listdir(RESULTS) if re.fullmatch(r"false_alarms(-[\w.-]+)?\.json", n)),
                   key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])   # line7 before line13
    out = []
    for name in names:
        d = load(name)
        rows = [[label, _settings(v["overrides"], v.get("config")), f"{v['false_alarms']} / {v['images']}",
                 f"**{v['rate']}** ({v['rate_95'][0]}–{v['rate_95'][1]})", " ".join(map(str, v["per_fit"])),
                 " ".join(map(str, v["highest_over_threshold"]))] for label, v in d["variants"].items()]
        lines = d["module"].startswith("lines:")
        what = (f"study lines {d['module'][6:]}, one fit on each: {d['good']} good images of the line (its bank "
                f"and the images that set its threshold), then {d['test']} fresh good images of the same line"
                if lines else f"{d['module']} module: each of {d['fits']} fits draws its own {d['good']} good images "
                f"(its bank and the images that set its threshold), then scores the same {d['test']} fresh good images")
        out.append(f"## False alarms on fresh good images, {d['module'] if lines else d['module'] + ' module'} at "
                   f"{d['size']}²: `{d['command']}` ({_when(d)})\n\n"
                   f"The {what}; the target is "
                   f"{d['target']} per good image (one in 20), at most, for the share of training sets its "
                   "confidence names (the settings' `false_alarm_confidence`). Interval: Wilson 95%.\n\n"
                   + _table(["variant", "settings", "false alarms / images", "per good image (95%)", "per fit",
                             "highest score / threshold, per fit"], rows) + "\n" + _by_confidence(d)
                   + (_by_line(d) if lines else ""))
    return "\n".join(out)


def threshold_laws() -> str:
    """bench/threshold_laws.py: each threshold law at each confidence on the recorded fits, and the
    false alarms each law lets through where it sets thresholds as high as the model's rule does."""
    d = load("threshold_laws")
    if not d:
        return ""
    rows = [[r["law"], r["confidence"], f"{r['level']:.4f}",
             f"{r['study']['false_alarms']} / {r['study']['images']}", f"{r['fresh']['false_alarms']} / {r['fresh']['images']}",
             f"{r['tuning']['false_alarms']} / {r['tuning']['images']}",
             f"{r['tuning']['detected'] / r['tuning']['defective']:.3f}", r["above_gumbel"],
             r["unreached"] or ""] for r in d["laws"]]
    ref = next(r["level"] for r in d["laws"] if r["law"] == "gumbel" and r["confidence"] == 0.9)
    same = []
    for law in dict.fromkeys(r["law"] for r in d["laws"]):
        pts = sorted((r["level"], r["study"]["false_alarms"] + r["fresh"]["false_alarms"]) for r in d["laws"] if r["law"] == law)
        if pts[0][0] <= ref <= pts[-1][0]:
            for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
                if x0 <= ref <= x1:
                    same.append([law, f"{y0 + (y1 - y0) * (ref - x0) / max(x1 - x0, 1e-12):.1f}"])
                    break
        else:
            same.append([law, "(outside its confidences)"])
    n = d["laws"][0]["study"]["images"] + d["laws"][0]["fresh"]["images"]
    return (f"## Threshold laws on the recorded fits: `{d['command']}` ({_when(d)})\n\n"
            f"Each law sets every recorded fit's threshold again from that fit's calibration scores ({d['fits']['study']} "
            f"study-line fits, {d['fits']['fresh']} tuning-line fits with 100 fresh good images each, the "
            f"{d['fits']['tuning']} tuning sets' default models), for at most one false alarm in {d['one_in']} at the "
            "confidence named; the model's rule (`gumbel`) gives the recorded thresholds (largest difference "
            f"{d['reproduced']:.1e}). Level: the mean over all fits of log(threshold / median calibration score), how "
            "high a law sets thresholds; recall: the tuning sets' defective images above their threshold; fits above "
            "the model's rule: of all fits, those whose threshold is higher than the Gumbel rule's at the same "
            "confidence; short of the confidence: fits where even the law's 1 - 1e-6 quantile keeps the target in "
            f"fewer draws of its bootstrap than the confidence asks (that quantile is then taken). The GEV law fits "
            f"{d['gev_shape']['heavy']} of the {d['gev_shape']['fits']} fits' own scores with a heavy upper tail "
            "(shape below 0).\n\n"
            + _table(["law", "confidence", "level", "false alarms, study lines", "false alarms, tuning lines (fresh)",
                      "false alarms, tuning sets", "recall, tuning sets", "fits above the model's rule",
                      "fits short of the confidence"], rows)
            + f"\n\nAt the level of the model's rule (gumbel at 0.9: {ref:.4f}), the false alarms each law lets through on "
              f"the {n} fresh good images (interpolated between its confidences): a law that knew each fit's own tail "
              "would let through fewer there.\n\n" + _table(["law", "false alarms at the model's level"], same) + "\n")


LINE_PROPERTIES = ("pitch", "rotation", "blur", "noise", "texture", "gradient", "vignetting")


def _by_line(d: dict) -> str:
    """A study of lines: each line's false alarms beside its properties, and how each property ranks
    with the line's good scores against its threshold (Spearman's rho over the lines)."""
    out = []
    for label, v in d["variants"].items():
        fits = v["fits"]
        shift = [statistics.median(f["test_scores"]) / statistics.median(f["calibration_scores"]) for f in fits]
        rows = [[f["line"], f"{k} / {len(f['test_scores'])}", f"{h:.3f}", f"{sh:.3f}",
                 *(f"{f['variation'][p]:.3g}" for p in LINE_PROPERTIES)]
                for f, k, h, sh in zip(fits, v["per_fit"], v["highest_over_threshold"], shift)]
        over = [statistics.median(f["test_scores"]) / f["threshold"] for f in fits]
        rho = [[p, f"{_spearman([f['variation'][p] for f in fits], over):.2f}",
                f"{_spearman([f['variation'][p] for f in fits], shift):.2f}"] for p in LINE_PROPERTIES]
        out.append(f"\nLine by line ({label}): the median good test score over the median calibration score "
                   "(calibration scores are out of fold: each scored against a bank without its fold) and the line's "
                   "properties (synthetic.Variation):\n\n"
                   + _table(["line", "false alarms", "highest / threshold", "test / calibration (medians)",
                             *LINE_PROPERTIES], rows)
                   + f"\n\nSpearman's rho over the {len(fits)} lines, each property against the median good test "
                   "score over the threshold, and against the test / calibration shift:\n\n"
                   + _table(["property", "rho with test / threshold", "rho with test / calibration"], rho) + "\n")
    return "".join(out)


def _spearman(x: list, y: list) -> float:
    """Spearman's rank correlation (tied values share their mean rank); 0 where either side is constant."""
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    try:
        return statistics.correlation(rx, ry)
    except statistics.StatisticsError:
        return 0.0


def _rule(config: dict) -> str:
    """A threshold rule as a record's config (or a peer's calibration) names it: a record from before the
    confidence was thresholded for the target on average."""
    c = config.get("false_alarm_confidence", 0)
    return f"at most one false alarm in N, confidence {c:g}" if c else "one false alarm in N on average"


def _by_confidence(d: dict) -> str:
    """The same fits' false alarms had their thresholds been set at each confidence of the rule."""
    rows = [[label, "on average" if c == "0" else c, f"{r['false_alarms']} / {v['images']}",
             f"{r['rate']} ({r['rate_95'][0]}–{r['rate_95'][1]})", " ".join(map(str, r["per_fit"])),
             " ".join(f"{t:.3f}" for t in r["threshold_vs_fit"])]
            for label, v in d["variants"].items() if "by_confidence" in v for c, r in v["by_confidence"].items()]
    if not rows:
        return ""
    return ("\nThe same fits, each threshold set again from its own calibration scores at each confidence of the "
            "rule (`false_alarm_confidence`: at most the target for that share of training sets; \"on average\": "
            "the target as the mean over training sets, the rule before the confidence):\n\n"
            + _table(["variant", "confidence", "false alarms / images", "per good image (95%)", "per fit",
                      "threshold / the fit's, per fit"], rows) + "\n")


def memory() -> str:
    d = load("memory")
    if not d:
        return ""
    return (f"## Memory: `{d.get('command', 'python bench/memory.py')}` ({_when(d)})\n\n"
            + _table(["fit on", "tiles", "patches seen", "bank", "RSS before", "peak RSS", "fit time"],
                     [[f"{d['images']} images", d["training_tiles"], d["training_patches"], d["bank"],
                       f"{d['rss_before_fit_mb']} MB", f"**{d['peak_rss_mb']} MB**", f"{d['fit_seconds']} s"]])
            + "\n")


def stream() -> str:
    d = load("stream")
    if not d:
        return ""
    rows = []
    for key, label in (("end_to_end_with_model_saturated", "with the model, saturated"),
                       ("end_to_end_with_model_paced", "with the model, paced at 70%")):
        r = d.get(key)
        if r:
            rows.append([label, r["frames_per_s"], r["megapixels_per_s"],
                         f"{r['latency_ms']['p50'] / 1e3:.2f} / {r['latency_ms']['p99'] / 1e3:.2f} s"])
    extra = ""
    if "transport_daemon_model_off" in d:
        base = d["transport_daemon_model_off"]["frames_per_s"]
        trows = [["the daemon with the model off (two hops: sender → daemon → consumer)", base, ""]]
        for key, label in (("raw_pyzmq_relay_same_bytes", "raw pyzmq relay, same bytes, two hops"),
                           ("psi_bsread_relay_two_hops", "psi-bsread as the same relay, two hops"),
                           ("raw_pyzmq_push_pull_one_hop", "raw pyzmq PUSH → PULL, one hop"),
                           ("psi_bsread_sender_to_source_one_hop", "psi-bsread Sender → Source, one hop")):
            if f"transport_{key}" in d:
                trows.append([label, d[f"transport_{key}"]["frames_per_s"], _pct(d[f"daemon_vs_{key}"])])
        extra = ("\nTransport only (model off):\n\n"
                 + _table(["path", "frames/s", "the daemon's rate as a share of it"], trows) + "\n")
    return (f"## Stream: `python bench/stream.py` ({_when(d)}, {d.get('size', '')})\n\n"
            + _table(["end to end", "frames/s", "MP/s", "latency p50 / p99"], rows) + "\n" + extra)


def store() -> str:
    d = load("store")
    if not d:
        return ""
    rows = []
    for key in ("writer_local_tiles_on", "writer_local_tiles_off", "writer_mongomock_tiles_on",
                "writer_mongomock_tiles_off"):
        r = d[key]
        _w, backend, _t, tiles = key.split("_")
        rows.append([backend, tiles, r["results_per_s"], f"{r['render_ms_per_result']} ms", r["images_per_result"],
                     f"{r['stored_mb_per_result']} MB"])
    off, on = d["processing_frames_per_s_store_off_on"]
    return (f"## Store: `python bench/store.py` ({_when(d)}, {d['size']})\n\n"
            + _table(["store", "tiles", "results/s", "render", "images", "stored"], rows)
            + f"\n\nProcessing with the model, store off vs local store with tiles (alternating runs): "
              f"{off} vs {on} frames/s ({_pct(d['processing_with_store_vs_off'])}).\n")


def ui() -> str:
    d = load("ui")
    if not d:
        return ""
    h, t = d["history"], d["tabs"]
    rows = [[k, v["median_ms"], f"{v['range_ms'][0]}–{v['range_ms'][1]}", v["matches"]] for k, v in h["queries"].items()]
    wins = ", ".join(f"{w['fps']} ({w['tabs']})" for w in t["windows"])
    lat = t["latency_s"]
    return (f"## Operator's page: `python bench/ui.py` ({_when(d)})\n\n"
            f"Processing {t['size']}² frames (model and local store on) with {t['tabs']} monitor tabs open in "
            f"Chromium on the same machine ({t.get('preview_side', 1024)} px previews), against none, in alternating {t['window_s']} s windows: "
            f"frames/s (tabs) {wins}. With the tabs / without, per pair: median {_pct(t['ratio_median'])} "
            f"(range {_pct(t['ratio_range'][0])}–{_pct(t['ratio_range'][1])}; target ≥ 95%).\n\n"
            f"Result leaving the processor → preview drawn in the tab, measured in the browser over "
            f"{lat['frames']} drawn frames: p50 {lat['p50']} s, p95 {lat['p95']} s, max {lat['max']} s "
            f"(target p95 < 0.5 s).\n\n"
            f"History over HTTP with {h['rows']:,} module sides on the local store ({h['repeats']} repeats, "
            f"interleaved; target < 200 ms):\n\n"
            + _table(["query (50 per page)", "median ms", "range ms", "matches"], rows) + "\n")


def workers() -> str:
    d = load("workers")
    if not d:
        return ""
    rows = [[i + 1, w["workers"], w["fps"], w["frames"], "yes" if w["in_order"] else "**no**",
             (f"{w['merger']['added_latency_ms']['p50']} / {w['merger']['added_latency_ms']['p99']}"
              if "merger" in w else "–"),
             (f"{w['merger']['gaps']} / {w['merger']['late']}" if "merger" in w else "–")]
            for i, w in enumerate(d["windows"])]
    m = d["merger_latency_ms"]
    return (f"## Several workers on one stream: `python bench/workers.py` ({_when(d)})\n\n"
            f"A simulated camera sends {d['size']}² frames faster than they are scored. One worker with two "
            f"threads, its output read directly, against two workers with one thread each and `vi_stream merge` "
            f"putting their outputs back in pulse order; each configuration started afresh, warmed up 15 s, "
            f"then {d['window_s']} s counted, alternating. Two/one per pair: median {_pct(d['ratio_median'])} "
            f"(range {_pct(d['ratio_range'][0])}–{_pct(d['ratio_range'][1])}). The merger's added latency "
            f"(arrival → sent): p50 {m['p50_median']:.1f} ms, p99 {m['p99_median']:.1f} ms "
            f"(range {m['p99_range'][0]}–{m['p99_range'][1]}), mostly the skew between the two workers' "
            f"queues when the camera outruns them."
            + (f" Paced below saturation (camera at {d['paced']['camera_fps']} frames/s, 70% of the two workers' "
               f"rate; {d['paced']['fps']} frames/s delivered, in order: "
               f"{'yes' if d['paced']['in_order'] else 'no'}): p50 "
               f"{d['paced']['merger']['added_latency_ms']['p50']} ms, p99 "
               f"{d['paced']['merger']['added_latency_ms']['p99']} ms." if d.get("paced") else "")
            + "\n\n"
            + _table(["window", "workers", "frames/s", "frames", "in order", "merger p50 / p99 ms",
                      "gaps / late"], rows) + "\n")


def batch() -> str:
    d = load("batch")
    if not d:
        return ""
    rows = [[i + 1, p["local_s"], p["local_images_per_s"], p["batch_s"], p["batch_images_per_s"], _pct(p["ratio"]),
             p["jobs"]] for i, p in enumerate(d["pairs"])]
    return (f"## Batch on Slurm: `python bench/batch.py` ({_when(d)})\n\n"
            f"{d['images']} images of {d['size']}², scored by `vi_stream score` in one local process against "
            f"`vi_stream batch` on the single-node test cluster (munged, slurmctld and slurmd on this machine, an "
            f"sshd on loopback): {d['tasks']} array tasks of one CPU each, from staging by SFTP to every result "
            f"ingested into a local store. Alternating, local first. Batch/local images/s: median "
            f"{_pct(d['ratio_median'])} (range {_pct(d['ratio_range'][0])}–{_pct(d['ratio_range'][1])}; "
            f"target ≥ 80%).\n\n"
            + _table(["pair", "local s", "local images/s", "batch s", "batch images/s", "batch/local", "jobs"], rows)
            + "\n")


def soak() -> str:
    d = load("soak")
    if not d:
        return ""
    r = d["rss_mb"]
    curve = d["curve"]
    pick = curve[:: max(1, len(curve) // 12)] + ([curve[-1]] if curve else [])
    seen, rows = set(), []
    for c in pick:
        if c["t"] not in seen:
            seen.add(c["t"])
            rows.append([c["t"], c["frames"], c["stored"], c["rss_mb"], c["fds"]])
    verdict = "flat" if d["flat"] else "**not flat**"
    return (f"## Soak: `{d['command']}` ({_when(d)})\n\n"
            f"{d['processed']} frames of {d['size']}² through a `vi_stream run` process with the local store "
            f"on (whole images), {d['frames_per_s']} frames/s; {d['stored']} stored, {d['lost']} lost, exit "
            f"code {d['exit_code']}. Resident memory: {r['first']} MB at the start, second quarter "
            f"{r['second_quarter_mean']} MB, last quarter {r['last_quarter_mean']} MB "
            f"({r['last_vs_second']:+.2%}: {verdict}; the target is within 2%), peak {r['max']} MB. Open "
            f"file descriptors {d['fds']['min']}–{d['fds']['max']}.\n\n"
            + _table(["s", "processed", "stored", "RSS MB", "open fds"], rows) + "\n")


def http() -> str:
    d = load("http_load")
    if not d:
        return ""
    rows = [[r["tree"], r["requests"], r["answers"].get("200", 0), r["answers"].get("503", 0), r["timed_out"],
             r["p50_s"], r["p99_s"], r["max_s"]] for r in d["runs"]]
    return (f"## REST server under a burst of clients: `{d['command']}` ({_when(d)})\n\n"
            f"{d['clients']} clients at once, each sending {d['requests_per_client']} `GET /status` one after the "
            f"other (a new connection each); no answer within {d['timeout_s']} s counts as timed out. Latency "
            "of the answered requests, in seconds:\n\n"
            + _table(["tree", "requests", "200", "503", "timed out", "p50 s", "p99 s", "max s"], rows) + "\n")


def startup() -> str:
    d = load("startup")
    if not d:
        return ""
    rows = [[r["tree"], f"`{r['command']}`", r["median_s"], f"{r['min_s']} – {r['max_s']}", r["cpu_median_s"],
             ", ".join(r["imports"]) or "–"] for r in d["runs"]]
    return (f"## Start-up of the commands that score nothing: `{d['command']}` ({_when(d)})\n\n"
            f"Each command in a fresh interpreter (`python -m vi_stream.cli …`), {d['repeat']} times, the trees and "
            "commands interleaved after one warm-up each; `models list` and `batch list` on an empty local store. "
            "Wall seconds (median and range) and the CPU seconds the command used (user + system, median: it "
            f"holds still when the machine is loaded); the target is under {d['target_s']} s. *Imports* names "
            "torch or numba when the command imported them:\n\n"
            + _table(["tree", "command", "median s", "range s", "CPU s", "imports"], rows) + "\n")


def headline() -> str:
    """The manual's headline table: one line per benchmark, the figure that matters, the command."""
    rows = []
    s, m, st, so = load("speed"), load("memory"), load("stream"), load("soak")
    sd = load("sealed")
    best = _best(sd.get("peers", []))
    runs = sd.get("runs", [])        # today's defaults first, then the other runs, the latest first (a stable sort)
    for r in sorted(reversed(runs), key=lambda r: _settings((), _sealed_config(r)) != "(defaults)"):
        o = r["overall"]
        peer = (f" (anomalib PatchCore, its best variant {best['label']}: {_auroc95(best['overall'])} / "
                f"{best['overall']['pixel_auroc_mean']} / {best['overall']['aupro_mean']})" if best else "")
        rows.append([f"sealed split (drawn once, by `--final`), {_code(_settings((), _sealed_config(r)))}: "
                     "image AUROC (95%) / pixel AUROC / AUPRO",
                     f"{_auroc95(o)} / {o['pixel_auroc_mean']} / {o['aupro_mean']}{peer}; recall "
                     f"{o['recall_at_threshold']} at {o['false_alarms_per_good_image']} false alarms per good image",
                     f"`{r['command']}` at {r['run']['commit'][:10]}"])    # the defaults of that commit
    g = load("generalise")
    if g and not sd.get("runs"):   # once the sealed split is scored, quality is quoted from it alone (issue 28)
        o, p = g["ours"], g.get("patchcore")
        peer = (f" (anomalib PatchCore: {p['held_out_overall_image_auroc']} / {p['held_out_mean']['pixel_auroc']} / "
                f"{p['held_out_mean']['aupro']})" if p else " (peer not run)")
        rows.append(["defect families never tuned on: image AUROC / pixel AUROC / AUPRO",
                     f"{o['held_out_overall_image_auroc']} / {o['held_out_mean']['pixel_auroc']} / "
                     f"{o['held_out_mean']['aupro']}{peer}", "`python bench/generalise.py --peer-python …`"])
        peer_recall = (f"; with no false alarm at the best threshold for each: {o['held_out_mean']['recall_no_false_alarm']}"
                       f" (PatchCore {p['held_out_mean']['recall_no_false_alarm']})" if p else "")
        rows.append(["same: recall at the fitted threshold, false alarms per good image",
                     f"{o['held_out_recall_at_threshold']}, {o['false_alarms_per_good_image']}{peer_recall}",
                     "`python bench/generalise.py --peer-python …`"])
    if s:
        made = f"`{s.get('command', 'python bench/speed.py')}`"
        rows.append(["scoring 768² / 2048²" + (f" ({' '.join(s['config'])})" if s.get("config") else ""),
                     f"{s['score_768']['megapixels_per_s']} / {s['score_2048']['megapixels_per_s']} MP/s", made])
        rows.append([f"fit {s['fit']['images']} good 768² images", f"{s['fit']['seconds']} s", made])
    se = load("search")
    if se:
        rows.append(["patch search vs faiss-cpu IVF (same cells, same work)",
                     f"{se['ours']['ms_per_image_median']} vs {se['faiss_ivf_fp16_two_stage']['ms_per_image_median']} "
                     "ms per 768² image", "`python bench/search.py`"])
    if m:
        rows.append([f"peak memory fitting {m['training_tiles']} tiles"
                     + (f" ({' '.join(m['config'])})" if m.get("config") else ""), f"{m['peak_rss_mb']} MB",
                     f"`{m.get('command', 'python bench/memory.py')}`"])
    if st:
        e = st["end_to_end_with_model_saturated"]
        rows.append(["stream 2048², bsread in → scored → bsread out", f"{e['frames_per_s']} frames/s",
                     "`python bench/stream.py`"])
    u = load("ui")
    if u:
        t, h = u["tabs"], u["history"]["queries"]
        rows.append([f"processing with {t['tabs']} monitor tabs open vs none ({t['size']}²)",
                     f"{_pct(t['ratio_median'])}; frame on screen p95 {t['latency_s']['p95']} s",
                     "`python bench/ui.py`"])
        rows.append([f"history, {u['history']['rows']:,} stored sides: first / filtered page",
                     f"{h['first page']['median_ms']} / {h['anomalous, not reviewed']['median_ms']} ms",
                     "`python bench/ui.py`"])
    wk = load("workers")
    if wk:
        rows.append([f"two workers (1 thread each) + merge vs one worker (2 threads), {wk['size']}²",
                     f"{_pct(wk['ratio_median'])} of the frames/s; merger adds p50 / p99 "
                     + (f"{wk['paced']['merger']['added_latency_ms']['p50']} / "
                        f"{wk['paced']['merger']['added_latency_ms']['p99']} ms paced, " if wk.get("paced") else "")
                     + f"{wk['merger_latency_ms']['p50_median']:.1f} / {wk['merger_latency_ms']['p99_median']:.1f} ms "
                       "saturated",
                     "`python bench/workers.py`"])
    bt = load("batch")
    if bt:
        rows.append([f"batch of {bt['images']} {bt['size']}² images on the single-node test Slurm vs local `score`",
                     f"{_pct(bt['ratio_median'])} of the images/s", "`python bench/batch.py`"])
    sp = [r for r in load("startup").get("runs", []) if r["tree"].startswith("this tree")]
    if sp:
        rows.append(["start-up of " + " / ".join(f"`{r['command']}`" for r in sp) + " (CPU s; median wall s)",
                     " / ".join(str(r["cpu_median_s"]) for r in sp) + "; wall "
                     + " / ".join(str(r["median_s"]) for r in sp) + " s", "`python bench/startup.py`"])
    if so:
        rows.append([f"soak, {so['processed']} frames with the store on",
                     f"RSS last quarter {so['rss_mb']['last_vs_second']:+.2%} vs second, {so['lost']} lost",
                     "`python bench/soak.py`"])
    return _table(["benchmark", "result", "command"], rows)


def bench_readme() -> str:
    parts = ["# Benchmarks\n",
             "Generated by `python bench/report.py` from `bench/results/*.json`; do not edit by hand. "
             "Each section names the command that wrote its results file. Measured on the project's 2-core "
             "VM (no GPU), whose speed drifts between runs: compare figures from one run.\n"]
    parts += [x for x in (sealed(), quality(), generalise(), *[structural(n) for n in _structural_names()], structural_lines(), false_alarms(), threshold_laws(), levers(), runtime(), trunk_calls(), dims(), speed(), ab_speed(), ab_speed("ab_issue26"), ab_speed("ab_estimate"), search(), memory(), stream(), store(), ui(), workers(), batch(), soak(), http(), startup()) if x]
    with open(os.path.join(HERE, "history.md")) as f:
        parts.append(f.read())
    return "\n".join(parts)


def readme_with_headline(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"{ROOT_README} has no {START} ... {END} block")
    a, b = text.index(START) + len(START), text.index(END)
    return text[:a] + "\n" + headline() + "\n" + text[b:]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="exit 1 if the files differ from what the results say")
    args = ap.parse_args()
    target = os.path.join(HERE, "README.md")
    new_bench = bench_readme()
    with open(ROOT_README) as f:
        old_root = f.read()
    new_root = readme_with_headline(old_root)
    if args.check:
        old_bench = open(target).read() if os.path.exists(target) else ""
        stale = [p for p, old, new in ((target, old_bench, new_bench), (ROOT_README, old_root, new_root))
                 if old != new]
        for p in stale:
            print(f"{p} is not what bench/results says: run python bench/report.py", file=sys.stderr)
        return 1 if stale else 0
    with open(target, "w") as f:
        f.write(new_bench)
    with open(ROOT_README, "w") as f:
        f.write(new_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
