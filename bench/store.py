"""Results stored per second, and whether storing slows processing.

    python bench/store.py [--results 10] [--frames 8] [--size 2048] [--repeats 3]

1. The store writer alone: 2048x2048 results (synthetic module with a defect,
   smooth anomaly map, its mask) submitted as fast as it takes them, on the
   local store and on MongoDB via mongomock, with tile images on and off.
   Reports results/s, the render (PNG encoding) share, and bytes per result.
2. The daemon end to end with the model, saturated (--block, lossless), with
   the store off and with the default local store (tiles on): processing
   frames/s should not change, because writes go through a queue, not inline.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

import common
import stream
from vi_stream.store import record
from vi_stream.evaluation import synthetic
from vi_stream.frame import Frame, Result
from vi_stream.store.local import LocalStore
from vi_stream.store.spool import Spool
from vi_stream.store.writer import StoreWriter


def results(n: int, size: int) -> list[Result]:
    out = []
    for i in range(n):
        s = synthetic.module_image((size, size), seed=300 + i, defects=("scratch",))
        rng = np.random.default_rng(i)
        heat = cv2.GaussianBlur(rng.random((size // 8, size // 8), dtype=np.float32), (0, 0), 2)
        heat = cv2.resize(heat, (size, size)) + (s.mask > 0) * 2.0
        mask = (heat > 1.0).astype(np.uint8)
        params = {"roi": [], "threshold": 1.0, "tile": 320, "overlap": 64, "model_id": "bench"}
        out.append(Result(Frame(s.image, i, 1_700_000_000 + i, 0, f"B-{i:03d}", "left"), s.image,
                          heat.astype(np.float32), mask, 2.0, True, [], params, {}))
    return out


@contextlib.contextmanager
def backend(kind: str, folder: str):
    if kind == "local":
        s = LocalStore(os.path.join(folder, "store")).start()
        yield s, lambda: sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(s.folder) for f in fs)
        s.close()
        return
    import mongomock
    import mongomock.gridfs
    from vi_stream.store.mongo import MongoStore
    mongomock.gridfs.enable_gridfs_integration()
    s = MongoStore(client=mongomock.MongoClient(), database="bench").start()
    yield s, lambda: sum(f["length"] for f in s.db.fs.files.find({}, {"length": 1}))


def writer_rate(kind: str, tiles: bool, batch: list[Result], tile: int = 512) -> dict:
    folder = tempfile.mkdtemp(prefix="vi-bench-store-")
    try:
        with backend(kind, folder) as (store, size):
            t = time.perf_counter()
            recs = [record.build(r, "B", tile, tiles) for r in batch[:3]]
            render_s = (time.perf_counter() - t) / 3
            images = sum(len(r.images) for r in recs) / 3
            w = StoreWriter(store, Spool(os.path.join(folder, "spool")),
                            lambda r: record.build(r, "B", tile, tiles), queue_size=8).start()
            t0 = time.perf_counter()
            for r in batch:
                w.submit(r)
            while w.statistics()["stored"] < len(batch):
                time.sleep(0.01)
            dt = time.perf_counter() - t0
            w.close()
            return {"results": len(batch), "results_per_s": round(len(batch) / dt, 2),
                    "render_ms_per_result": round(render_s * 1e3, 1),
                    "render_share": round(render_s * len(batch) / dt, 2),
                    "images_per_result": round(images), "stored_mb_per_result": round(size() / len(batch) / 1e6, 2)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=int, default=10)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    out: dict = {"size": f"{a.size}x{a.size} uint8", "review_tile": 512}
    batch = results(a.results, a.size)
    for kind in ("local", "mongomock"):
        for tiles in (True, False):
            key = f"writer_{kind}_tiles_{'on' if tiles else 'off'}"
            out[key] = writer_rate(kind, tiles, batch)
            print(key, out[key], file=sys.stderr, flush=True)
    image = synthetic.module_image((a.size, a.size), seed=5, defects=("dust",)).image
    model = common.model_for(a.size)
    # Alternate off/on runs: this VM's run-to-run noise (about +-15%) is larger than the effect.
    off, on = [], []
    for rep in range(a.repeats):
        off.append(stream.through_daemon(model, image, a.frames, model_off=False))
        with tempfile.TemporaryDirectory(prefix="vi-bench-daemon-") as folder:
            on.append(stream.through_daemon(model, image, a.frames, model_off=False,
                                            store=os.path.join(folder, "store"), spool=os.path.join(folder, "spool")))
        print("daemon", rep, off[-1]["frames_per_s"], on[-1]["frames_per_s"], file=sys.stderr, flush=True)
    out["daemon_store_off"] = off
    out["daemon_store_local_tiles_on"] = on
    mean = lambda runs: sum(r["frames_per_s"] for r in runs) / len(runs)  # noqa: E731
    out["processing_frames_per_s_store_off_on"] = [round(mean(off), 3), round(mean(on), 3)]
    out["processing_with_store_vs_off"] = round(mean(on) / mean(off), 3)
    common.write("store", out)


if __name__ == "__main__":
    main()
