"""Scoring speed of model settings side by side, interleaved: a speed lever's A/B (issue 28, section 3).

    python bench/levers.py [--sizes 768 2048] [--rounds 7] [--variant LABEL k=v ...]

One model per variant (the defaults first, then each ``--variant``: a label and ModelConfig
overrides; without any, a larger tile and the lattice score), fitted on the same good images of
the tuning line; then, per image size, rounds in which every model scores the same image once,
in turn, so the machine's drift falls on all of them alike. Reported per variant and size: the
median megapixels per second with its range, the median per-round ratio of its time to the
default's, and the median seconds of each part (backbone, search, lattice, ...). Quality of the
same variants: bench/structural.py (tuning figures).
"""
from __future__ import annotations

import argparse
import statistics
import time

import common
import generalise
import genset

from vi_stream.model import AnomalyModel, ModelConfig

DEFAULT_VARIANTS = (("tile-512", ("tile=512", "overlap=64")), ("lattice", ("lattice=True",)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[768, 2048])
    ap.add_argument("--train", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--variant", nargs="+", action="append", metavar="LABEL [k=v ...]")
    a = ap.parse_args()
    variants = [("default", ())] + ([(v[0], tuple(v[1:])) for v in a.variant] if a.variant else list(DEFAULT_VARIANTS))
    out = {}
    for size in a.sizes:
        shape = (size, size)
        train = [genset.image(shape, 10_000 + i, 7).image for i in range(a.train)]
        img = genset.image(shape, 31_000, 7, ("scratch", "dust"), 0.5).image
        models = {label: AnomalyModel.fit(train, generalise._override(ModelConfig(), items))
                  for label, items in variants}
        for m in models.values():
            m.score(img)                       # warm-up: tracing, numba
        times = {label: [] for label in models}
        parts = {label: {} for label in models}
        for _ in range(a.rounds):
            for label, m in models.items():
                t = time.perf_counter()
                r = m.score(img)
                times[label].append(time.perf_counter() - t)
                for k, v in r.timings.items():
                    parts[label].setdefault(k, []).append(v)
        mp = img.shape[0] * img.shape[1] / 1e6
        rows = {}
        for label, items in variants:
            speeds = [mp / t for t in times[label]]
            rows[label] = {"overrides": list(items), "mp_per_s": round(statistics.median(speeds), 2),
                           "mp_per_s_range": [round(min(speeds), 2), round(max(speeds), 2)],
                           "time_vs_default": round(statistics.median(
                               [t / t0 for t, t0 in zip(times[label], times["default"])]), 3),
                           "parts_ms": {k: round(1e3 * statistics.median(v), 1) for k, v in parts[label].items()}}
        out[str(size)] = rows
    common.write("levers", {"command": "python bench/levers.py" + (f" --sizes {' '.join(map(str, a.sizes))}"
                                                                   if a.sizes != [768, 2048] else "")
                            + f" --rounds {a.rounds}" + "".join(" --variant " + " ".join(v) for v in a.variant or ()),
                            "rounds": a.rounds, "train": a.train, "per_size": out})


if __name__ == "__main__":
    main()
