"""anomalib PatchCore's scoring speed in rounds driven by bench/levers.py, so the peer's rounds
interleave with ours and the machine's drift falls on both sides alike.

    <peer venv>/bin/python bench/peer_speed.py DIR [--norm tflite] [--coreset 0.01] [--seed 0]

Fits PatchCore with bench/peer_anomalib.py's settings (its backbone, taps and normalisations) on
DIR/train.npy (N, H, W) uint8, scores DIR/image.npy once to warm up, and prints one JSON line
with the fit's figures. Then, for every line ``score`` read from stdin, it scores the image twice
and prints the seconds the second call took (warm, as ours are timed; the call as a user makes it:
normalisation, backbone, search, upsampling and smoothing of the map); it stops at the end of its
input. Timing inside this
process leaves the pipe's round trip out of the peer's time, as ``AnomalyModel.score`` is timed
in-process on our side.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import peer_anomalib  # defines torchvision's missing operator schemas before anomalib imports it
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--norm", choices=("imagenet", "tflite"), default="tflite")
    ap.add_argument("--coreset", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    train = np.load(os.path.join(a.dir, "train.npy"))
    image = np.load(os.path.join(a.dir, "image.npy"))
    model = peer_anomalib.build("patchcore")
    t0 = time.perf_counter()
    model.train()
    with torch.no_grad():
        for img in train:
            model(peer_anomalib.to_tensor(img[None], a.norm))
        model.subsample_embedding(a.coreset)
    fit_s = time.perf_counter() - t0
    model.eval()

    def score() -> float:
        t = time.perf_counter()
        with torch.no_grad():
            out = model(peer_anomalib.to_tensor(image[None], a.norm))
        float(out.pred_score.reshape(-1)[0])
        return time.perf_counter() - t

    score()
    print(json.dumps({"bank": int(model.memory_bank.shape[0]), "train_images": len(train),
                      "fit_seconds": round(fit_s, 1), "norm": a.norm, "coreset": a.coreset,
                      "anomalib": __import__("anomalib").__version__}), flush=True)
    for line in sys.stdin:
        if line.strip() != "score":
            raise SystemExit(f"peer_speed: expected 'score', got {line.strip()!r}")
        score()                       # untimed: the pools awake, as ours are when they are timed
        print(score(), flush=True)


if __name__ == "__main__":
    main()
