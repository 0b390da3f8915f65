"""The operator's page under load: processing with monitor tabs open, frame-to-screen latency, history at 100k.

    python bench/ui.py [--size 2048] [--tabs 4] [--window 40] [--pairs 3] [--rows 100000] [--preview-side PX]

1. Processing rate with ``--tabs`` monitor tabs open against none: a simulated camera
   sends ``--size``² frames faster than the model scores them (model on, store on),
   and windows of ``--window`` s with no tab and with the tabs open (real Chromium pages
   of the monitor, tabs of one browser as on an operator's workstation, driven by
   Playwright, on the same 2 cores) alternate ``--pairs``
   times. Reported: frames/s per window and the ratio of each pair (target >= 0.95).
2. Latency, measured in the browser: for every frame a tab draws, the time from the
   result leaving the processor (the event's ``t_result``) until the preview is on
   the canvas. Reported: p50/p95/max over all tabs (target p95 < 0.5 s).
3. History with ``--rows`` module sides on the local store: the first page, filtered
   pages and a deep page over HTTP (``GET /api/history``), each repeated, interleaved.
   Reported: median and range in ms (target < 200 ms).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import requests

import common
from vi_stream.service import config as config_mod
from vi_stream.store import record as rec
from vi_stream.service.daemon import Daemon
from vi_stream.store.local import LocalStore
from vi_stream.evaluation.simulate import Simulator

CHROMIUM = os.environ.get("VI_STREAM_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--no-first-run"]


def _processed(base: str) -> tuple[float, int]:
    s = requests.get(base + "/statistics", timeout=10).json()["statistics"]
    return time.monotonic(), s["frames_processed"]


def tabs_and_latency(model, size: int, tabs: int, window: float, pairs: int, preview_side: int) -> dict:
    from playwright.sync_api import sync_playwright
    state = tempfile.mkdtemp(prefix="vi-bench-ui-")
    sim = Simulator(0, "UI", fps=50.0, shape=(size, size), pool=4, defect_rate=0.5, seed=5)
    port = sim.start()
    sim.run_in_thread()
    cfg = config_mod.build(None, env={"VI_STREAM_STATE_DIR": state}, input=f"tcp://127.0.0.1:{port}", prefix="UI",
                           output_port=0, rest_port=0, auto_start=True,
                           preview_side=preview_side)
    windows: list[dict] = []
    latencies: list[float] = []
    with Daemon(cfg, model=model) as d, sync_playwright() as p:
        base = f"http://127.0.0.1:{d.rest_port}"
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # one browser's tabs, as one operator's workstation opens them: they share its connections to the daemon
        # (six per host), and they come from one address, which the server's per-address limits see as one client
        # (4 tabs in 4 separate browser contexts would be 4 machines behind one address: 24 connections)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pages = [context.new_page() for _ in range(tabs)]
        time.sleep(2 * window)                                  # warm: numba, caches, the writer's first PNGs
        for i in range(2 * pairs):
            open_tabs = tabs if i % 2 else 0                    # none, tabs, none, tabs, ...
            for pg in pages:
                pg.goto(base + "/#/monitor" if open_tabs else "about:blank")
            if open_tabs:
                for pg in pages:
                    pg.wait_for_function("window.vi && window.vi.latencies.length > 0", timeout=60_000)
                    pg.evaluate("window.vi.latencies.length = 0")
            t0, n0 = _processed(base)
            time.sleep(window)
            t1, n1 = _processed(base)
            if open_tabs:
                for pg in pages:
                    latencies += pg.evaluate("window.vi.latencies")
            windows.append({"tabs": open_tabs, "frames": n1 - n0, "seconds": round(t1 - t0, 2),
                            "fps": round((n1 - n0) / (t1 - t0), 4)})
            print(windows[-1], file=sys.stderr)
        listeners = d.live.statistics()
        browser.close()
    sim.close()
    ratios = [windows[2 * k + 1]["fps"] / windows[2 * k]["fps"] for k in range(pairs)]
    lat = np.asarray(latencies)
    return {"size": size, "tabs": tabs, "preview_side": preview_side, "window_s": window, "windows": windows,
            "ratio_median": round(statistics.median(ratios), 4), "ratio_range": [round(min(ratios), 4),
                                                                                 round(max(ratios), 4)],
            "latency_s": {"frames": int(lat.size), "p50": round(float(np.percentile(lat, 50)), 3),
                          "p95": round(float(np.percentile(lat, 95)), 3), "max": round(float(lat.max()), 3)},
            "live": listeners}


def _fill(store: LocalStore, rows: int, batch: int = 2000) -> None:
    """``rows`` module sides (half of the modules with both sides), with verdicts, tags and reviews varied.
    Light records (no images): the history reads only the sides' rows, never the images."""
    rng = np.random.default_rng(0)
    t0 = 1_790_000_000
    for start in range(0, rows, batch):
        recs = []
        for i in range(start, min(rows, start + batch)):
            tiles = 16
            side = {"result_id": f"{i:024x}", "pulse_id": i, "processed_at": rec.timestamp_iso(t0 + i, 0),
                    "score": float(rng.gamma(2.0, 10.0)), "tag": ("day", "night", "rework")[i % 3],
                    "tile_count": tiles, "verified_masks": [bool(i % 7 == 0)] * tiles, "defects": []}
            side["is_anomalous"] = side["score"] > 40.0
            recs.append(rec.Record(side["result_id"], f"MOD-{i // 2:06d}", rec.SIDES[i % 2], side))
        store.write(recs)


def history(model, rows: int, repeats: int) -> dict:
    folder = tempfile.mkdtemp(prefix="vi-bench-history-")
    store = LocalStore(os.path.join(folder, "store")).start()
    t = time.perf_counter()
    _fill(store, rows)
    fill_s = time.perf_counter() - t
    queries = {"first page": {},
               "anomalous, not reviewed": {"verdict": "anomalous", "reviewed": "no"},
               "review queue (anomalous, undecided, oldest first)": {"verdict": "anomalous", "decision": "none",
                                                                     "sort": "processed_at", "order": "asc"},
               "tag + time range": {"tag": "night", "from": rec.timestamp_iso(1_790_000_000 + rows // 4, 0),
                                    "to": rec.timestamp_iso(1_790_000_000 + rows // 2, 0)},
               "module prefix": {"module": "MOD-0123"},
               "by score": {"sort": "score"},
               "deep page (skip half)": {"skip": str(rows // 2)}}
    state = tempfile.mkdtemp(prefix="vi-bench-ui-")
    cfg = config_mod.build(None, env={"VI_STREAM_STATE_DIR": state}, input="tcp://127.0.0.1:1", prefix="H",
                           output_port=0, rest_port=0)
    times: dict[str, list[float]] = {k: [] for k in queries}
    totals = {}
    with Daemon(cfg, model=model, store=store) as d:
        base = f"http://127.0.0.1:{d.rest_port}/api/history"
        with requests.Session() as web:
            for _ in range(repeats):
                for name, q in queries.items():              # interleaved: noise falls on every query alike
                    t = time.perf_counter()
                    r = web.get(base, params={"limit": "50", **q}, timeout=30)
                    times[name].append(time.perf_counter() - t)
                    r.raise_for_status()
                    totals[name] = r.json()["total"]
    store.close()
    return {"rows": rows, "fill_s": round(fill_s, 1), "repeats": repeats,
            "queries": {k: {"median_ms": round(1e3 * statistics.median(v), 1),
                            "range_ms": [round(1e3 * min(v), 1), round(1e3 * max(v), 1)], "matches": totals[k]}
                        for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tabs", type=int, default=4)
    ap.add_argument("--window", type=float, default=40.0)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--preview-side", type=int, default=config_mod.DaemonConfig.preview_side)
    a = ap.parse_args()
    model = common.model_for(a.size)      # fitted on the size it scores, as a site would
    out = {"history": history(model, a.rows, a.repeats)}
    print(out["history"], file=sys.stderr)
    out["tabs"] = tabs_and_latency(model, a.size, a.tabs, a.window, a.pairs, a.preview_side)
    common.write("ui", out)


if __name__ == "__main__":
    main()
