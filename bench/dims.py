"""Scoring speed against the number of feature dimensions kept, interleaved.

    python bench/dims.py [--dims 32 64 96 144] [--size 768] [--rounds 9]

One model per dimension count, fitted on the same good images of the varied line bench/genset.py
draws; then rounds in which every model scores the same defective image once, in turn, so the
machine's drift falls on all of them alike. Reported per model: the median megapixels per second
with its range, the median share of the time outside the backbone, and the median per-round
ratio of its time to the first model's. Quality for the same counts is bench/generalise.py's.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import common
import genset
from vi_stream.model import AnomalyModel, ModelConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[32, 64, 96, 144])
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--train", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    shape = (a.size, a.size)
    train = [genset.image(shape, 10_000 + i, 7).image for i in range(a.train)]
    img = genset.image(shape, 31_000, 7, ("scratch", "dust"), 0.5).image
    models = {d: AnomalyModel.fit(train, replace(ModelConfig(), dim=d)) for d in a.dims}
    for m in models.values():
        m.score(img)  # warm-up: tracing, numba
    times = {d: [] for d in a.dims}
    outside = {d: [] for d in a.dims}
    for _ in range(a.rounds):
        for d, m in models.items():
            t = time.perf_counter()
            r = m.score(img)
            total = time.perf_counter() - t
            times[d].append(total)
            outside[d].append(1.0 - r.timings["backbone"] / total)
    mp = img.size / 1e6
    first = a.dims[0]
    rows = {}
    for d in a.dims:
        speeds = [mp / t for t in times[d]]
        ratios = [t / t0 for t, t0 in zip(times[d], times[first])]
        rows[str(d)] = {"mp_per_s": round(statistics.median(speeds), 2),
                        "mp_per_s_range": [round(min(speeds), 2), round(max(speeds), 2)],
                        "share_outside_backbone": round(statistics.median(outside[d]), 3),
                        f"time_vs_{first}": round(statistics.median(ratios), 3),
                        "threshold": round(models[d].threshold, 3)}
    common.write("dims", {"command": f"python bench/dims.py --size {a.size} --rounds {a.rounds}",
                                    "image": f"{a.size}x{a.size} grey, line {7}", "per_dim": rows})


if __name__ == "__main__":
    main()
