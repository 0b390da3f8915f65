"""Several workers on one stream: two `vi_stream run` workers with one thread each (and the merger)
against one worker with two threads, on this machine's two cores.

    python bench/workers.py [--size 768] [--window 40] [--pairs 2]

A simulated camera sends ``--size``² frames faster than the workers score them. Alternating
configurations (one, two, one, two, ...), each started afresh and warmed up for 15 s:

* one: a worker with OMP_NUM_THREADS=NUMBA_NUM_THREADS=2, its output read directly;
* two: two workers (``--worker w1``/``w2``) with one thread each, PULLing from the camera, and
  ``vi_stream merge`` (in this process) putting their outputs back in pulse order.

Reported per window: frames/s delivered in order at the consumer; the ratio two/one per pair
(median and range); the merger's added latency (arrival -> sent, p50/p99), its gaps and late
frames. Saturated, that latency is mostly the skew of the two workers' queues; a last window
paces the camera at 70% of the two workers' rate and measures it without queues. The store is
off: this measures scoring and the fan-in, not the store.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import zmq

import common
from vi_stream.io import bsread_codec as codec
from vi_stream.scale.merge import Merger
from vi_stream.model import save
from vi_stream.evaluation.simulate import Simulator


def _worker(model: str, cam: int, name: str, threads: int, state: str) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, VI_STREAM_STATE_DIR=state, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    p = subprocess.Popen([sys.executable, "-m", "vi_stream.cli", "run", f"tcp://127.0.0.1:{cam}", "CAM", "--model",
                          model, "--store", "off", "--worker", name, "--output-port", "0", "--rest-port", "0",
                          "--auto-start"], env=env, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"ready: .* output tcp://127.0.0.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1))
    raise RuntimeError(f"worker {name} exited with {p.wait()}")


def window(model: str, size: int, two: bool, seconds: float, fps: float = 100.0) -> dict:
    sim = Simulator(0, "CAM", fps=fps, shape=(size, size), pool=4, defect_rate=0.3, seed=7)
    cam = sim.start()
    state = tempfile.mkdtemp(prefix="vi-bench-workers-")
    procs = [_worker(model, cam, f"w{i + 1}", 1 if two else 2, state) for i in range(2 if two else 1)]
    ctx = zmq.Context()
    merger = Merger([f"tcp://127.0.0.1:{port}" for _p, port in procs], max_wait=2.0, context=ctx) if two else None
    out = ctx.socket(zmq.PULL)
    out.setsockopt(zmq.LINGER, 0)
    out.setsockopt(zmq.RCVTIMEO, 200)
    out.connect(f"tcp://127.0.0.1:{merger.start() if merger else procs[0][1]}")
    sim.run_in_thread()
    try:
        t_end_warm = time.monotonic() + 15
        while time.monotonic() < t_end_warm:
            try:
                out.recv_multipart()
            except zmq.Again:
                pass
        n, last, in_order = 0, -1, True
        if merger:
            merger.reset_latency()       # the warm-up's first pulse waited max_wait for nothing before it
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            try:
                pulse = codec.main_header(out.recv_multipart())[1]
            except zmq.Again:
                continue
            in_order &= pulse > last
            last, n = pulse, n + 1
        elapsed = time.monotonic() - t0
        st = merger.statistics() if merger else None
    finally:
        sim.close()
        for p, _port in procs:
            p.terminate()
            p.wait(60)
        if merger:
            merger.close()
        out.close(0)
        ctx.destroy(linger=0)
    w = {"workers": 2 if two else 1, "camera_fps": fps, "frames": n, "seconds": round(elapsed, 2), "fps": round(n / elapsed, 4),
         "in_order": in_order}
    if st:
        w["merger"] = {k: st[k] for k in ("gaps", "late", "duplicates", "dropped", "added_latency_ms")}
    print(w, file=sys.stderr)
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--window", type=float, default=40.0)
    ap.add_argument("--pairs", type=int, default=2)
    a = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="vi-bench-model-")
    model = save(common.model_for(a.size), os.path.join(folder, "model.npz"))
    windows = [window(model, a.size, two=bool(i % 2), seconds=a.window) for i in range(2 * a.pairs)]
    ratios = [windows[2 * k + 1]["fps"] / windows[2 * k]["fps"] for k in range(a.pairs)]
    lat = [w["merger"]["added_latency_ms"] for w in windows if "merger" in w]
    # Below saturation: the camera at 70% of what two workers scored, so no worker builds a queue.
    paced_fps = round(0.7 * statistics.median(w["fps"] for w in windows if w["workers"] == 2), 2)
    paced = window(model, a.size, two=True, seconds=a.window, fps=paced_fps)
    common.write("workers", {
        "size": a.size, "window_s": a.window, "windows": windows,
        "ratio_median": round(statistics.median(ratios), 4), "ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
        "merger_latency_ms": {"p50_median": round(statistics.median(x["p50"] for x in lat), 3),
                              "p99_median": round(statistics.median(x["p99"] for x in lat), 3),
                              "p99_range": [min(x["p99"] for x in lat), max(x["p99"] for x in lat)]},
        "paced": paced})


if __name__ == "__main__":
    main()
