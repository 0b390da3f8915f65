"""The offline demo: synthetic good modules -> model -> scored test modules -> pictures."""
from __future__ import annotations

import json
import os
import sys
import time

from vi_stream.evaluation import offline
from vi_stream.errors import ModelError
from vi_stream.model import ModelConfig, read_meta
from vi_stream.model.config import config_from_meta


def run_offline_demo(out: str, n_good: int, per_defect: int, device: str = "cpu") -> int:
    started = time.perf_counter()
    train_dir, _ = offline.write_synthetic(os.path.join(out, "train"), n_good, 0, seed=1)
    test_dir, mask_dir = offline.write_synthetic(os.path.join(out, "test"), 4, per_defect, seed=2)
    model_path = os.path.join(out, "model.npz")
    if not _cache_usable(model_path, n_good):
        print(f"fitting on {n_good} synthetic good modules ...", file=sys.stderr)
        offline.train(train_dir, model_path, ModelConfig(), device)
    scored_dir = os.path.join(out, "scored")
    results = offline.score(model_path, test_dir, scored_dir, device=device)
    report = offline.evaluate(model_path, test_dir, mask_dir, os.path.join(out, "evaluation.json"), device)
    print(f"{'image':28s} {'score':>8s}  verdict    defects")
    for r in results:
        truth = "defect" if offline.find_mask(mask_dir, r.path) else "good"
        verdict = "ANOMALOUS" if r.is_anomalous else "ok"
        print(f"{os.path.basename(r.path):28s} {r.score:8.3f}  {verdict:9s}  {len(r.defects)} (truth: {truth})")
    print(json.dumps({k: report[k] for k in ("image_auroc", "pixel_auroc", "image_f1", "pixel_f1",
                                             "false_positive_images", "missed_images")}))
    print(f"overlays: {scored_dir}/*_overlay.png  ({time.perf_counter() - started:.0f} s)")
    return 0


def _overlaps(a: list[int], b: list[int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _cache_usable(path: str, n_good: int) -> bool:
    """A cached demo model fitted on ``n_good`` images with today's default settings; missing, corrupt
    or old ones (fitted before a default changed, as the lattice score's did) are refitted."""
    try:
        meta = read_meta(path)
        same = config_from_meta(meta) == ModelConfig()
    except ModelError:
        return False
    if not same:
        print(f"the model cached in {path} was fitted with other settings than today's defaults", file=sys.stderr)
    good = meta.get("good_images", meta.get("training_images", 0) + meta.get("calibration_images", 0))
    return same and good == n_good


def ensure_model(path: str, n_good: int, device: str = "cpu") -> str:
    """A model fitted on synthetic good modules (the offline demo's training set), cached at ``path``."""
    from vi_stream.evaluation import synthetic
    from vi_stream.model import AnomalyModel, save
    if _cache_usable(path, n_good):
        return path
    print(f"fitting a model on {n_good} synthetic good modules (cached in {path}) ...", file=sys.stderr)
    imgs = (s.image for _name, s in synthetic.dataset(n_good, 0, seed=1))
    save(AnomalyModel.fit(imgs, ModelConfig(), device), path)
    return path


def run_stream_demo(out: str, frames: int, n_good: int, device: str = "cpu") -> int:
    """Simulated camera -> daemon (bsread in/out, REST) -> consumer; summary + pictures."""
    import zmq

    from vi_stream.service import config as config_mod
    from vi_stream.model import postprocess
    from vi_stream.client import Client
    from vi_stream.service.daemon import Daemon
    from vi_stream.io import bsread_codec as codec
    from vi_stream.io.files import write_image
    from vi_stream.evaluation.simulate import Simulator

    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    model_path = ensure_model(os.path.join(out, "model.npz"), n_good, device)
    ctx = zmq.Context()
    sim = Simulator(0, "DEMO", fps=50.0, pool=frames, defect_rate=0.6, seed=7, context=ctx)
    sim_port = sim.start()
    store_dir = os.path.join(out, "store")
    cfg = config_mod.build(None, env={}, input=f"tcp://127.0.0.1:{sim_port}", prefix="DEMO", model=model_path,
                           device=device, output_port=0, rest_port=0, auto_start=False, store=store_dir,
                           spool=os.path.join(out, "spool"))
    pictures = os.path.join(out, "stream")
    os.makedirs(pictures, exist_ok=True)
    rows = []
    with Daemon(cfg, context=ctx) as daemon:
        client = Client(f"http://127.0.0.1:{daemon.rest_port}", timeout=10)
        consumer = ctx.socket(zmq.PULL)
        consumer.setsockopt(zmq.LINGER, 0)
        consumer.connect(f"tcp://127.0.0.1:{daemon.config.output_port}")
        client.start()
        sim.run_in_thread(frames)
        decoder = codec.Decoder()
        deadline = time.monotonic() + 60 + 10 * frames
        while len(rows) < frames and time.monotonic() < deadline:
            if not consumer.poll(1000):
                continue
            msg = decoder.decode(consumer.recv_multipart())
            v = {k: codec.value(c) for k, c in msg.channels.items()}
            img, heat, mask = v["DEMO:FPICTURE"], v["DEMO:FPICTURE.anomaly_map"], v["DEMO:FPICTURE.mask"]
            params = json.loads(v["DEMO:FPICTURE.processing_parameters"])
            found = json.loads(v["DEMO:FPICTURE.defects"])
            truth = json.loads(v["DEMO:TRUTH"])
            write_image(os.path.join(pictures, f"pulse_{msg.pulse_id:04d}_overlay.png"),
                        postprocess.overlay(img, heat, params["threshold"], mask))
            rows.append((msg.pulse_id, v["DEMO:MODULE"], float(v["DEMO:FPICTURE.score"]),
                         bool(v["DEMO:FPICTURE.is_anomalous"]), truth, found))
        # Every result also goes to the store, off the processing path: wait for the writer to catch up.
        end = time.monotonic() + 60
        while client.get_statistics()["store"]["stored"] < len(rows) and time.monotonic() < end:
            time.sleep(0.2)
        stats = client.get_statistics()
        modules = client.list_modules(limit=1000)
        client.stop()
        consumer.close(0)
    sim.close()
    ctx.term()
    print(f"{'pulse':>5s} {'module':10s} {'score':>7s}  verdict    truth -> found")
    hits = misses = false_alarms = 0
    for pulse, module, score, bad, truth, found in rows:
        names = ",".join(t["type"] for t in truth) or "good"
        ok = [any(_overlaps(t["bbox"], f["bbox"]) for f in found) for t in truth]
        hits += sum(ok)
        misses += len(ok) - sum(ok)
        false_alarms += int(bad and not truth)
        print(f"{pulse:5d} {module:10s} {score:7.2f}  {'ANOMALOUS' if bad else 'ok':9s}  {names} -> "
              f"{len(found)} region(s){'' if not truth else ' ' + ('found' if all(ok) else 'MISSED')}")
    lat = stats["latency_ms"]
    print(f"frames {len(rows)}/{frames} processed; defects found {hits}/{hits + misses}; "
          f"false alarms on good frames {false_alarms}")
    print(f"throughput {stats['frames_per_s']:.2f} frames/s, {stats['megapixels_per_s']:.2f} MP/s; "
          f"latency p50 {lat['p50']} ms, p99 {lat['p99']} ms; rejected {stats['frames_rejected_total']}, "
          f"output dropped {stats['output_dropped']}")
    st = stats["store"]
    print(f"store {st['store']}: {st['stored']} results stored, {st['spooled']} spooled, {st['failed']} failed; "
          f"{len(modules)} modules (the daemon serves them at /api/modules, images at /api/images/<id>)")
    print(f"overlays: {pictures}/pulse_*_overlay.png  ({time.perf_counter() - started:.0f} s)")
    if st["stored"] < len(rows):
        print(f"vi_stream: error: only {st['stored']} of {len(rows)} results reached the store", file=sys.stderr)
        return 1
    if len(rows) < frames:
        print(f"vi_stream: error: only {len(rows)} of {frames} frames came back", file=sys.stderr)
        return 1
    return 0
