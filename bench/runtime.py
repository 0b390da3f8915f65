"""The backbone's runtime as a speed lever (issue 28, section 3): torch against onnxruntime, fp32 and int8.

    pip install onnxruntime onnx        (the bench's own needs; vi_stream does not depend on them)
    python bench/runtime.py [--images 12] [--rounds 7]

The trunk vi_stream scores with (EfficientNet-Lite0 up to its deepest tap, batch norm folded, the
default taps) is exported to ONNX once; onnxruntime runs it in fp32, and in int8 after static
quantisation (QDQ, per-channel weights, calibrated on 20 training tiles of the tuning line, 7-bit
activations: on a CPU without VNNI, as AVX2-only hosts are, the 8-bit u8 x s8 products saturate
their 16-bit sums and every tap comes out 70-85% wrong).
Each round runs every runtime over the same tiles (320 px, the default tile, ``tiles_per_call`` at
a time, as scoring calls it), in turn, so the VM's drift falls on all alike: reported are the
median seconds per 768² image's tiles, the per-round ratio to torch (median and range) and each
tap's relative error against torch (the int8 error decides whether quality needs checking at all).

Then the same for whole scoring: a model fitted on 10 images of the line scores one 768² image per
runtime per round, its trunk calls going to torch or to the fp32 session (the thread pools of
torch, numba and onnxruntime meet there, which the backbone alone does not show).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import common
import genset
import numpy as np
import torch

from vi_stream.model import AnomalyModel, ModelConfig
from vi_stream.model.anomaly import tiles_per_call
from vi_stream.model.features import PatchFeatures
from vi_stream.model.tiling import tile


def _sessions(pf: PatchFeatures, sample: torch.Tensor, calib: list[np.ndarray], work: str):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, int8 = (os.path.join(work, f) for f in ("trunk.onnx", "trunk_pre.onnx", "trunk_int8.onnx"))
    torch.onnx.export(pf.trunk.eval(), (sample.contiguous(),), fp32, input_names=["x"],
                      output_names=[f"tap{i}" for i in range(len(pf.strides))],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, opset_version=17, dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"x": x} for x in calib)

        def get_next(self):
            return next(self.it, None)
    quant_pre_process(fp32, pre)
    quantize_static(pre, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")   # its pool sleeps between calls: torch's and numba's run beside it
    return {name: ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=12, help="768² images of the tuning line whose tiles are run")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    try:
        import onnxruntime
    except ImportError:
        sys.exit("bench/runtime.py needs onnxruntime and onnx: pip install onnxruntime onnx")
    cfg = ModelConfig()
    pf = PatchFeatures(cfg.backbone, cfg.taps, 1)
    images = [genset.image((768, 768), 10_000 + i, 7).image for i in range(a.images)]
    tiles = np.concatenate([tile(im, cfg.tile, cfg.overlap, 0.0, 1 / 255.0)[0] for im in images])
    step = tiles_per_call(cfg, pf.device)
    batches = [pf.to_tensor(tiles[i:i + step]) for i in range(0, len(tiles), step)]
    # int8 calibration on tiles of other training images than those measured
    others = np.concatenate([tile(genset.image((768, 768), 10_100 + i, 7).image, cfg.tile, cfg.overlap, 0.0, 1 / 255.0)[0]
                             for i in range(3)])
    calib = [np.ascontiguousarray(pf.to_tensor(t[None]).numpy()) for t in others[:20]]
    with tempfile.TemporaryDirectory() as work:
        sessions = _sessions(pf, batches[0], calib, work)
        runs = {"torch": lambda x: [t.numpy() for t in pf.trunk_forward(x)]}
        for name, sess in sessions.items():
            runs[name] = lambda x, s=sess: s.run(None, {"x": np.ascontiguousarray(x.numpy())})
        ref = runs["torch"](batches[len(batches) // 2])
        errors = {name: [round(float(np.linalg.norm(o - r) / np.linalg.norm(r)), 4)
                         for o, r in zip(run(batches[len(batches) // 2]), ref)] for name, run in runs.items()}
        for run in runs.values():          # warm-up: tracing, allocation
            run(batches[0])
        seconds = {name: [] for name in runs}
        for _ in range(a.rounds):
            for name, run in runs.items():
                t = time.perf_counter()
                for x in batches:
                    run(x)
                seconds[name].append((time.perf_counter() - t) / a.images)
        pipeline = _pipeline(sessions["onnxruntime fp32"], a.rounds)
    out = {}
    for name, s in seconds.items():
        ratios = [x / t for x, t in zip(s, seconds["torch"])]
        out[name] = {"seconds_per_768_image": round(statistics.median(s), 4),
                     "time_vs_torch": round(statistics.median(ratios), 3),
                     "time_vs_torch_range": [round(min(ratios), 3), round(max(ratios), 3)],
                     "tap_relative_error": errors[name]}
        print(name, out[name], file=sys.stderr)
    common.write("runtime", {"command": f"python bench/runtime.py --images {a.images} --rounds {a.rounds}",
                             "onnxruntime": onnxruntime.__version__, "tiles_per_image": len(tiles) // a.images,
                             "tiles_per_call": step, "taps": list(cfg.taps), "runtimes": out,
                             "scoring_768": pipeline})


def _pipeline(session, rounds: int) -> dict:
    model = AnomalyModel.fit([genset.image((768, 768), 10_000 + i, 7).image for i in range(10)], ModelConfig())
    test = genset.image((768, 768), 30_000, 7, ("scratch",), 0.5).image
    torch_forward = model.features.trunk_forward

    def onnx_forward(x):
        return [torch.from_numpy(o) for o in session.run(None, {"x": np.ascontiguousarray(x.numpy())})]
    seconds = {"torch": [], "onnxruntime fp32": []}
    for forward in (torch_forward, onnx_forward):        # warm-up
        model.features.trunk_forward = forward
        model.score(test)
    for _ in range(rounds):
        for name, forward in (("torch", torch_forward), ("onnxruntime fp32", onnx_forward)):
            model.features.trunk_forward = forward
            t = time.perf_counter()
            model.score(test)
            seconds[name].append(time.perf_counter() - t)
    ratios = [o / t for o, t in zip(seconds["onnxruntime fp32"], seconds["torch"])]
    out = {name: {"seconds": round(statistics.median(s), 4), "mp_per_s": round(768 * 768 / 1e6 / statistics.median(s), 2)}
           for name, s in seconds.items()}
    out["time_vs_torch"] = round(statistics.median(ratios), 3)
    out["time_vs_torch_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    print("scoring", out, file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.exit(main())
