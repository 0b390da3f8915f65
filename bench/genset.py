"""The generalisation set on disk, so that vi_stream and the peer read the very same pixels.

    python bench/genset.py DIR [--size 768] [--train 40] [--good 20] [--per-family 8] [--ladder 3]

A directory of plain .npy stacks (no image codec needed by either reader):

    train.npy                (N, H, W) uint8   good images of the line, for fitting
    good.npy                 (G, H, W) uint8   good test images
    <family>.npy / <family>_mask.npy           defective test images and their masks
    ladder_<family>.npy      (len(LADDER) * L, H, W): L defects, each at every ladder contrast
    set.json                 what was drawn (line, sizes, seeds, contrasts)

(bench/setfiles.py reads and writes these, for both sides.)

Every image is a module of one varied line (``Variation.draw(line)``). Test defects are drawn at
a contrast uniform in CONTRAST, which is low enough that no family is found in every image by
every model: a set that a model saturates cannot tell a design choice from another.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import setfiles
from vi_stream.evaluation import synthetic

LADDER = (1.0, 0.6, 0.35, 0.2, 0.1)
CONTRAST = (0.15, 0.8)


def image(shape, seed, line, families=(), contrast=None):
    """One module of line ``line`` (``Variation.draw(line)``), with ``families`` painted at ``contrast``."""
    return synthetic.module_image(shape, seed, families, contrast=contrast, variation=synthetic.Variation.draw(line))


def build(out: str, size: int = 768, train: int = 40, good: int = 20, per_family: int = 8, ladder: int = 3,
          line: int = 7, families=tuple(f for f in synthetic.FAMILIES if f not in synthetic.RESERVED)) -> dict:
    """Write the set to ``out`` (created) and return its description."""
    os.makedirs(out, exist_ok=True)
    shape = (size, size)
    setfiles.save_stack(out, "train", (image(shape, 10_000 + i, line).image for i in range(train)))
    setfiles.save_stack(out, "good", (image(shape, 20_000 + i, line).image for i in range(good)))
    rng = np.random.default_rng(1)
    contrasts = {}
    for fi, fam in enumerate(families):
        c = [float(rng.uniform(*CONTRAST)) for _ in range(per_family)]
        samples = [image(shape, 30_000 + 100 * fi + i, line, (fam,), c[i]) for i in range(per_family)]
        setfiles.save_stack(out, fam, (s.image for s in samples))
        setfiles.save_stack(out, f"{fam}_mask", (s.mask for s in samples))
        setfiles.save_stack(out, setfiles.ladder(fam), (image(shape, 40_000 + 100 * fi + j, line, (fam,), lc).image
                                                         for lc in LADDER for j in range(ladder)))
        contrasts[fam] = [round(x, 3) for x in c]
    desc = {"size": size, "train": train, "good": good, "per_family": per_family, "ladder": ladder, "line": line,
            "ladder_contrasts": list(LADDER), "contrast_range": list(CONTRAST), "families": list(families),
            "contrasts": contrasts}
    setfiles.describe(out, desc)
    return desc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--good", type=int, default=20)
    ap.add_argument("--per-family", type=int, default=8)
    ap.add_argument("--ladder", type=int, default=3)
    ap.add_argument("--line", type=int, default=7)
    a = ap.parse_args()
    build(a.out, a.size, a.train, a.good, a.per_family, a.ladder, a.line)


if __name__ == "__main__":
    main()
