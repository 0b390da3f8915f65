"""False alarms on fresh good images at the calibrated threshold, per model setting, over several fits.

    python bench/false_alarms.py [--module classic|line:L | --lines FIRST-LAST] [--size 768] [--good 30]
                                 [--fits 3] [--test 100] [--variant LABEL k=v ... | --defaults-only]
                                 [--name NAME]

Each fit draws its own ``--good`` good images (its bank and the images that set its threshold for
at most one false alarm in ``false_alarm_one_in``, 20, at ``false_alarm_confidence``, 0.9: all of
them scored out of fold by default, or the
held-out ones), then scores the same ``--test`` fresh good images: a false alarm is a good image
over the threshold. Several fits, because the threshold moves from one training set to the next
(from 6 held-out images of 30, widely); a setting's rate is its false alarms over all fits, with
the Wilson 95% interval.

``--module classic`` is the module ``vi_stream demo`` and the tests draw (evaluation.synthetic);
``line:L`` a module line of the generalisation benchmark's generator (bench/genset.py), L one of
the tuning lines (7, 13, 16). Variants as in bench/levers.py: the defaults first, then each
``--variant`` (a label and ModelConfig overrides); without any, the kNN map alone (lattice=False),
unless ``--defaults-only``.
``--lines FIRST-LAST`` asks another question: is a line whose fresh good images go over its
threshold more often than the rule allows an accident of its training set, or a property of the line?
Each fit is then on a line of its own (STUDY_LINES: drawn for this, neither a tuning line nor a line
of the sealed split), its training and test images both of that line, and every fit records its
line's properties (synthetic.Variation) beside its scores. The rule keeps at most one false alarm in
``false_alarm_one_in`` for ``false_alarm_confidence`` of training sets: for that share of lines, if
lines differ only by their draw.
Recall is not measured here (bench/structural.py, bench/sealed.py): a setting that trades it for
fewer false alarms is read there too.

A threshold is a function of its fit's calibration scores only, so each variant's fits also give
the false alarms that each confidence of the rule (``CONFIDENCES``, false_alarm_confidence) would
have given, from the same scores; every fit's calibration and test scores are recorded.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict

import numpy as np

import common
import generalise
import genset
from structural import TUNING_LINES
from vi_stream.evaluation import synthetic
from vi_stream.model import AnomalyModel, ModelConfig
from vi_stream.model.calibration import calibrated_threshold

DEFAULT_VARIANTS = (("knn-only", ("lattice=False",)),)
TEST_SEED = 900_000     # fresh good images: no fit draws these seeds
CONFIDENCES = (0.0, 0.8, 0.9, 0.95)   # the rule's confidences read off every fit (0: the target on average)
STUDY_LINES = range(100, 200)         # lines --lines may draw: none is a tuning or a sealed line (tests check)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (95% at z 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    mid, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (mid - half) / (1 + z * z / n)), min(1.0, (mid + half) / (1 + z * z / n))


def by_confidence(fits: list[dict], one_in: int) -> dict:
    """For each of CONFIDENCES: the false alarms per fit had each fit's threshold been set from its
    calibration scores at that confidence, their rate over all fits with its Wilson interval, and the
    thresholds as a share of the fit's own."""
    out = {}
    for c in CONFIDENCES:
        thr = [calibrated_threshold(f["calibration_scores"], one_in, confidence=c) for f in fits]
        per = [int(np.sum(np.asarray(f["test_scores"]) > t)) for f, t in zip(fits, thr)]
        k, n = sum(per), sum(len(f["test_scores"]) for f in fits)
        lo, hi = wilson(k, n)
        out[f"{c:g}"] = {"per_fit": per, "false_alarms": k, "rate": round(k / n, 4), "rate_95": [round(lo, 4), round(hi, 4)],
                         "threshold_vs_fit": [round(t / f["threshold"], 4) for f, t in zip(fits, thr)]}
    return out


def module(text: str):
    """``classic`` or ``line:L`` as a function (shape, seed) -> good image."""
    if text == "classic":
        return lambda shape, seed: synthetic.module_image(shape, seed).image
    kind, _, line = text.partition(":")
    if kind != "line" or not line.isdigit() or int(line) not in TUNING_LINES:
        raise argparse.ArgumentTypeError(f"--module is 'classic' or 'line:L' with L one of "
                                         f"{', '.join(map(str, TUNING_LINES))}, got {text!r}")
    return line_images(int(line))


def line_images(line: int):
    """Good modules of ``line`` (bench/genset.py's generator) as a function (shape, seed) -> image."""
    return lambda shape, seed: genset.image(shape, seed, line).image


def study_lines(text: str) -> list[int]:
    """``FIRST-LAST`` as the lines it names, each one of STUDY_LINES."""
    first, _, last = text.partition("-")
    if not (first.isdigit() and last.isdigit()) or not (STUDY_LINES.start <= int(first) <= int(last) < STUDY_LINES.stop):
        raise argparse.ArgumentTypeError(f"--lines is FIRST-LAST within {STUDY_LINES.start}-{STUDY_LINES.stop - 1} "
                                         f"(lines drawn for this study alone), got {text!r}")
    return list(range(int(first), int(last) + 1))


def line_fit(line: int) -> dict:
    """What a fit on ``line`` records of it: the line and its properties."""
    return {"line": line, "variation": {k: round(v, 4) for k, v in asdict(synthetic.Variation.draw(line)).items()}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--module", help="classic (the default), or line:L for a tuning line (7, 13, 16)")
    ap.add_argument("--lines", metavar="FIRST-LAST", help="one fit per line of these study lines (100-199), "
                                                               "instead of --module and --fits")
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--good", type=int, default=30, help="good images per fit (default 30, as vi_stream demo)")
    ap.add_argument("--fits", type=int, help="fits, each on its own training images (default 3)")
    ap.add_argument("--test", type=int, default=100, help="fresh good images each fit scores")
    ap.add_argument("--variant", nargs="+", action="append", metavar="LABEL [k=v ...]")
    ap.add_argument("--defaults-only", action="store_true", help="the defaults alone, without the kNN map's variant")
    ap.add_argument("--name", default="false_alarms", help="results file under bench/results/ (without .json)")
    a = ap.parse_args(argv)
    if a.lines and (a.module or a.fits):
        ap.error("--lines fits once on each line it names: give it or --module and --fits, not both")
    try:
        draw = module(a.module or "classic")
        lines = study_lines(a.lines) if a.lines else None
    except argparse.ArgumentTypeError as err:
        ap.error(str(err))
    a.module, a.fits = (f"lines:{a.lines}", len(lines)) if lines else (a.module or "classic", a.fits or 3)
    if a.defaults_only and a.variant:
        ap.error("--defaults-only runs the defaults alone: give it or --variant, not both")
    if a.good < 2 * ModelConfig().calibration_every or a.fits < 1 or a.test < 1:
        ap.error("--good must be at least 10 (what a variant that holds images out needs), --fits and --test "
                 "at least 1")
    variants = [("defaults", ())] + ([(v[0], tuple(v[1:])) for v in a.variant] if a.variant else
                                     [] if a.defaults_only else list(DEFAULT_VARIANTS))
    configs = {label: generalise._override(ModelConfig(), items).validate() for label, items in variants}
    shape = (a.size, a.size)
    fresh = lambda draw: [draw(shape, TEST_SEED + i) for i in range(a.test)]   # noqa: E731
    test = None if lines else fresh(draw)
    rows = {label: {"overrides": list(items), "per_fit": [], "highest_over_threshold": [], "fits": []}
            for label, items in variants}
    for fit in range(a.fits):
        if lines:           # the line's own training and test images
            draw = line_images(lines[fit])
            test = fresh(draw)
        train = [draw(shape, 100_000 * (fit + 1) + i) for i in range(a.good)]
        for label, config in configs.items():
            model = AnomalyModel.fit(train, config)
            scores = np.array([model.score(img).score for img in test])
            ratios = scores / model.threshold
            rows[label]["per_fit"].append(int(np.sum(ratios > 1.0)))
            # what the threshold was made of and what it met: another rule can be read off these
            rows[label]["fits"].append({**(line_fit(lines[fit]) if lines else {}),
                                        "threshold": round(model.threshold, 6),
                                        "calibration_scores": model.meta["calibration_scores"],
                                        "test_scores": [round(float(v), 6) for v in scores]})
            rows[label]["highest_over_threshold"].append(round(float(ratios.max()), 3))
            rows[label]["config"] = common.recorded_config(model)
            print(f"fit {fit}: {label}: {rows[label]['per_fit'][-1]} of {a.test} over the threshold", flush=True)
    for label, r in rows.items():
        k, n = sum(r["per_fit"]), a.fits * a.test
        lo, hi = wilson(k, n)
        r.update(false_alarms=k, images=n, rate=round(k / n, 4), rate_95=[round(lo, 4), round(hi, 4)],
                 by_confidence=by_confidence(r["fits"], configs[label].false_alarm_one_in))
    common.write(a.name, {
        "command": "python bench/false_alarms.py " + (f"--lines {a.lines}" if lines else f"--module {a.module}")
                   + f" --size {a.size} --good {a.good}" + ("" if lines else f" --fits {a.fits}") + f" --test {a.test}" + "".join(" --variant " + " ".join(v) for v in a.variant or ())
                   + (" --defaults-only" if a.defaults_only else "") + (f" --name {a.name}" if a.name != "false_alarms" else ""),
        "module": a.module, "size": a.size, "good": a.good, "fits": a.fits, "test": a.test,
        "target": round(1 / ModelConfig().false_alarm_one_in, 4), "variants": rows})


if __name__ == "__main__":
    main()
