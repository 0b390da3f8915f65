"""The hand-written search against faiss-cpu on the same bank, cells and queries.

    python bench/search.py [--good 30] [--size 768] [--rounds 5]

Fits the default model on the quality benchmark's good images, then searches the patches of
its test images (10 good, 30 defective) with
  - ours: `PatchIndex.distance` (medoid tree -> own cell for every patch; the 4 nearest cells
    for patches above the gate, half the threshold);
  - faiss IVF, float16 codes (`IndexIVFScalarQuantizer`, QT_fp16) on the same 1024 cells (our
    k-means centres as its coarse quantizer): nprobe 1 for every patch, then nprobe 4 for the
    patches above the same gate, so both do the same two-stage work;
  - faiss IVF, nprobe 4 for every patch (no gate);
  - exact search over the same bank (the reference for accuracy).
Timing: per image, the methods interleaved image by image, `--rounds` rounds; medians with
their range. Accuracy: the share of patches above the gate whose distance is more than 1% above
the exact one, and the image/pixel AUROC each search gives.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import common
from vi_stream.evaluation import synthetic
from vi_stream.evaluation.metrics import auroc
from vi_stream.model import AnomalyModel, ModelConfig
from vi_stream.model.anomaly import raw_features, to_heatmap
from vi_stream.search import exact_nn_distance


def faiss_index(idx, threads: int):
    import faiss
    faiss.omp_set_num_threads(threads)
    d = idx.dim
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(np.ascontiguousarray(idx.centres, np.float32))
    ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, len(idx.centres), faiss.ScalarQuantizer.QT_fp16,
                                        faiss.METRIC_L2)
    ivf.train(idx.bank[:1000])     # fp16 codes need no statistics; the coarse quantizer is ours
    ivf.add(idx.bank)
    return ivf


def faiss_two_stage(ivf, q: np.ndarray, gate: float, nprobe: int) -> np.ndarray:
    ivf.nprobe = 1
    d2, _ = ivf.search(q, 1)
    d2 = d2[:, 0]
    rows = np.flatnonzero(d2 > gate * gate)
    if len(rows):
        ivf.nprobe = nprobe
        r2, _ = ivf.search(np.ascontiguousarray(q[rows]), 1)
        d2[rows] = np.minimum(d2[rows], r2[:, 0])
    return np.sqrt(np.maximum(d2, 0))


def faiss_flat_probe(ivf, q: np.ndarray, nprobe: int) -> np.ndarray:
    ivf.nprobe = nprobe
    d2, _ = ivf.search(q, 1)
    return np.sqrt(np.maximum(d2[:, 0], 0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--good", type=int, default=30)
    ap.add_argument("--per-defect", type=int, default=6)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    import torch
    threads = torch.get_num_threads()
    shape = (a.size, a.size)
    train = [s.image for _n, s in synthetic.dataset(a.good, 0, shape, seed=1)]
    test = [s for _n, s in synthetic.dataset(10, a.per_defect, shape, seed=2)]
    model = AnomalyModel.fit(train, ModelConfig())
    cfg, idx = model.config, model.index
    gate = 0.5 * model.threshold
    raws = [raw_features(model.features, s.image, cfg, model.intensity) for s in test]
    qs = [np.ascontiguousarray((r.reshape(-1, model.features.raw_dim) - model.mean) @ model.components, np.float32)
          for r in raws]
    ivf = faiss_index(idx, threads)
    methods = {
        "ours": lambda q: idx.distance(q, gate=gate),
        "faiss_ivf_fp16_two_stage": lambda q: faiss_two_stage(ivf, q, gate, idx.nprobe),
        "faiss_ivf_fp16_nprobe4_all": lambda q: faiss_flat_probe(ivf, q, idx.nprobe),
    }
    for f in methods.values():      # warm up (compilation, faiss's first call)
        f(qs[0])
    times: dict[str, list[float]] = {k: [] for k in methods}
    maps: dict[str, list[np.ndarray]] = {k: [] for k in methods}
    for rnd in range(a.rounds):
        for i, q in enumerate(qs):
            for k, f in methods.items():   # interleaved, image by image
                t = time.perf_counter()
                dist = f(q)
                times[k].append(time.perf_counter() - t)
                if rnd == 0:
                    maps[k].append(dist)
    exact = [exact_nn_distance(q, idx.bank) for q in qs]
    y = np.array([s.mask.any() for s in test])
    ys = np.concatenate([s.mask.ravel() for s in test])

    def quality(dists: list[np.ndarray]) -> dict:
        heat = [to_heatmap(dd, r.shape[:3], s.image.shape, cfg) for dd, r, s in zip(dists, raws, test)]
        above = np.concatenate([e > gate for e in exact])
        dd, ee = np.concatenate(dists), np.concatenate(exact)
        return {"image_auroc": round(auroc(y, np.array([h.max() for h in heat])), 4),
                "pixel_auroc": round(auroc(ys, np.concatenate([h.ravel() for h in heat])), 4),
                "above_gate_more_than_1pct_off": round(float(np.mean(dd[above] > 1.01 * ee[above])), 4)}

    out = {"images": len(qs), "patches_per_image": int(len(qs[0])), "bank": int(len(idx.bank)),
           "cells": int(len(idx.centres)), "dim": idx.dim, "threads": threads, "rounds": a.rounds,
           "exact_same_bank": quality(exact)}
    base = np.median(times["ours"])
    for k in methods:
        t = np.array(times[k])
        out[k] = {"ms_per_image_median": round(1e3 * float(np.median(t)), 2),
                  "ms_range": [round(1e3 * float(t.min()), 2), round(1e3 * float(np.percentile(t, 90)), 2)],
                  "time_vs_ours": round(float(np.median(t) / base), 2), **quality(maps[k])}
    common.write("search", {"command": f"python bench/search.py --good {a.good} --size {a.size} --rounds {a.rounds}",
                            **out})


if __name__ == "__main__":
    main()
