"""How the trunk is called, as a speed lever (issue 28, section 3: overlap recomputation).

    python bench/trunk_calls.py [--sizes 768 2048] [--rounds 7]

Scoring cuts an image into tiles of 320 px overlapping by 64 (the default ``tile`` and
``overlap``) and sends ``tiles_per_call`` of them to the trunk per call: at 768² and at 2048²
that is 1.56x the image's pixels through the backbone. The issue asks whether a larger tile or one
pass over the whole image (halos only where the receptive field needs them) removes that. Here
the trunk alone (EfficientNet-Lite0 to its deepest tap, batch norm folded, traced, frozen and
optimised as scoring runs it, one trunk per way traced on that way's calls, so that no way's
timing depends on the shapes another met first; one-channel input of uniform noise, since the
trunk's time does not depend on the pixels) runs over the same image's pixels cut four ways, each
round every way in an order shuffled anew (seeded), so the machine's drift falls on all alike:

- ``tiles``: the default, 320 px tiles at 64 px overlap, ``tiles_per_call`` per call;
- ``whole``: one call on the whole image (no recomputation);
- ``bands``: bands the image's width wide (at most BAND_WIDTH px, then side by side with the same
  overlap), ``--band`` rows tall, overlapping by 64 rows: seams only between bands;
- ``tiles-1``: the default tiles one per call (the call's size against the tiles' count).

Reported per size and way: the pixels through the trunk over the image's, the median ms per image
and its range, and the median per-round ratio of its time to ``tiles``. Timing only: a way that is
faster still has to be shown to keep the model's quality (features computed in a band see other
padding than in a tile) before scoring may use it.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import common
import torch

from vi_stream.model import ModelConfig
from vi_stream.model.anomaly import tiles_per_call
from vi_stream.model.tiling import make_grid

BAND_WIDTH = 1088    # px: wider images are cut into bands side by side (a call of 320 x 2048 is 0.66 MP)


def ways(size: int, band: int, overlap: int, tile: int, per_call: int) -> dict[str, list[tuple[int, int, int]]]:
    """Each way as its calls: (tiles in the call, height, width)."""
    g = make_grid(size, size, tile, overlap)
    tiles = [(min(per_call, g.count - i), tile, tile) for i in range(0, g.count, per_call)]
    bw = min(size, BAND_WIDTH)
    bx = make_grid(1, size, bw, overlap).nx           # bands side by side: 1 while the image fits one
    by = make_grid(size, 1, band, overlap).ny
    pad16 = lambda n: -(-n // 16) * 16     # the deepest tap's stride: a call's sides are whole multiples of it
    return {"tiles": tiles, "whole": [(1, pad16(size), pad16(size))],
            "bands": [(1, band, pad16(bw))] * (bx * by), "tiles-1": [(1, tile, tile)] * g.count}


def run(sizes, rounds: int, band: int) -> dict:
    from vi_stream.model.features import PatchFeatures
    config = ModelConfig()
    per_call = tiles_per_call(config, "cpu")
    rng = random.Random(0)
    out = []
    for size in sizes:
        plan = ways(size, band, config.overlap, config.tile, per_call)
        inputs = {c: torch.rand(*c[:1], 1, *c[1:]).contiguous(memory_format=torch.channels_last)
                  for calls in plan.values() for c in calls}
        trunks = {}
        for name, calls in plan.items():  # scoring's own trunk, one per way, traced on its first call and warmed
            trunks[name] = PatchFeatures(config.backbone, config.taps, 1, "cpu")
            for c in dict.fromkeys(calls):
                for _ in range(3):
                    trunks[name].trunk_forward(inputs[c])
        times = {name: [] for name in plan}
        names = list(plan)
        for _r in range(rounds):
            rng.shuffle(names)           # no way always runs first, or after the same other
            for name in names:
                t = time.perf_counter()
                for c in plan[name]:
                    trunks[name].trunk_forward(inputs[c])
                times[name].append(time.perf_counter() - t)
        for name, calls in plan.items():
            px = sum(n * h * w for n, h, w in calls)
            ratio = [a / b for a, b in zip(times[name], times["tiles"])]
            out.append({"size": size, "way": name, "calls": len(calls), "call_shape": list(calls[0]),
                        "pixels_vs_image": round(px / size ** 2, 3),
                        "ms": round(1000 * statistics.median(times[name]), 1),
                        "ms_range": [round(1000 * min(times[name]), 1), round(1000 * max(times[name]), 1)],
                        "vs_tiles": round(statistics.median(ratio), 3),
                        "vs_tiles_range": [round(min(ratio), 3), round(max(ratio), 3)]})
            print(json.dumps(out[-1]))
    return {"rounds": rounds, "band": band, "band_width": BAND_WIDTH, "tiles_per_call": per_call, "rows": out}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[768, 2048])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--band", type=int, default=320, help="rows per band (a multiple of 16, more than the overlap)")
    ap.add_argument("--name", default="trunk_calls", help="results file under bench/results/ (without .json)")
    a = ap.parse_args(argv)
    if a.band % 16 or a.band <= ModelConfig().overlap:
        ap.error(f"--band is a multiple of 16 above the overlap ({ModelConfig().overlap}), got {a.band}")
    if any(s < ModelConfig().tile for s in a.sizes) or a.rounds < 1:
        ap.error(f"--sizes are at least the tile ({ModelConfig().tile}) and --rounds at least 1")
    result = run(a.sizes, a.rounds, a.band)
    args = sys.argv[1:] if argv is None else argv
    common.write(a.name, {"command": " ".join(["python bench/trunk_calls.py", *args]), **result})


if __name__ == "__main__":
    main()
