"""Folder-level jobs behind the CLI: train, score, evaluate, synthetic sets."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from vi_stream.model import postprocess
from vi_stream.evaluation import synthetic
from vi_stream.errors import InputError
from vi_stream.io import files
from vi_stream.evaluation.metrics import RegionOverlap, auroc, f1
from vi_stream.model import ModelConfig

if TYPE_CHECKING:
    from vi_stream.model import AnomalyModel

# The scorer (torch) is imported by each job once its folders are found: a wrong path is told at once.

Progress = Callable[[int], None]


def train(images_dir: str, out: str, config: ModelConfig, device: str | None = None,
          progress_factory: Callable[[int, str], Progress] | None = None) -> AnomalyModel:
    paths = files.list_images(images_dir)
    from vi_stream.model import AnomalyModel, save
    progress = progress_factory(len(paths), "fit") if progress_factory else None
    model = AnomalyModel.fit(files.iter_images(paths), config, device, progress)
    save(model, out)
    return model


@dataclass
class Scored:
    path: str
    score: float
    is_anomalous: bool
    defects: list[dict]
    heatmap: np.ndarray
    mask: np.ndarray


def score(model_path: str, images_dir: str, out_dir: str, threshold: float | None = None,
          device: str | None = None, progress_factory: Callable[[int, str], Progress] | None = None,
          keep_maps: bool = False) -> list[Scored]:
    """Score every image; write ``<stem>_heatmap.tiff`` (float32), ``<stem>_mask.png`` (0/255),
    ``<stem>_overlay.png`` and ``scores.csv``. Unreadable images are reported and skipped."""
    paths = files.list_images(images_dir)
    from vi_stream.model import load
    model = load(model_path, device)
    os.makedirs(out_dir, exist_ok=True)
    progress = progress_factory(len(paths), "score") if progress_factory else None
    rows = []
    results = []
    failures = []
    for p in paths:
        try:
            img = files.read_image(p)
            r = model.score(img, threshold)
        except InputError as err:
            failures.append(f"{os.path.basename(p)}: {err}")
            if progress:
                progress(1)
            continue
        s = files.stem(p)
        files.write_image(os.path.join(out_dir, f"{s}_heatmap.tiff"), r.heatmap.astype(np.float32))
        files.write_image(os.path.join(out_dir, f"{s}_mask.png"), (r.mask * 255).astype(np.uint8))
        files.write_image(os.path.join(out_dir, f"{s}_overlay.png"),
                          postprocess.overlay(img, r.heatmap, r.threshold, r.mask))
        rows.append((os.path.basename(p), f"{r.score:.6f}", int(r.is_anomalous), len(r.defects), _lattice_cell(r.lattice)))
        results.append(Scored(p, r.score, r.is_anomalous, r.defects,
                              r.heatmap if keep_maps else np.empty(0), r.mask if keep_maps else np.empty(0)))
        if progress:
            progress(1)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "score", "is_anomalous", "defects", "lattice"])
    w.writerows(rows)
    files.write_text(os.path.join(out_dir, "scores.csv"), buf.getvalue())
    if failures:
        raise InputError(f"{len(failures)} of {len(paths)} images could not be scored (others were written): "
                         + "; ".join(failures))
    return results


def _lattice_cell(lat: dict) -> str:
    """scores.csv's lattice column: the lattice the image's score used, or why it used none."""
    if lat.get("used"):
        return f"pitch {lat['pitch_px']:.2f} px at {lat['angle_deg']:.2f} deg"
    return "none: " + lat.get("reason", "off")


def find_mask(masks_dir: str, image_path: str) -> str | None:
    s = files.stem(image_path)
    for name in (f"{s}_mask.png", f"{s}.png", f"{s}_mask.tif", f"{s}.tif", f"{s}_mask.tiff", f"{s}.tiff"):
        p = os.path.join(masks_dir, name)
        if os.path.isfile(p):
            return p
    return None


def evaluate(model_path: str, images_dir: str, masks_dir: str, out_json: str | None = None,
             device: str | None = None, progress_factory: Callable[[int, str], Progress] | None = None) -> dict:
    """Image AUROC, pixel AUROC, AUPRO (per-region overlap up to 30% FPR) and F1 at the model's threshold.

    Ground truth: ``<stem>_mask.png`` or ``<stem>.png`` in ``masks_dir`` (non-zero = defect);
    an image without a mask file is a good image.
    """
    if not os.path.isdir(masks_dir):
        raise InputError(f"not a folder: {masks_dir}")
    paths = files.list_images(images_dir)
    from vi_stream.model import load
    model = load(model_path, device)
    progress = progress_factory(len(paths), "evaluate") if progress_factory else None
    labels, scores, pix_y, pix_s, pix_p = [], [], [], [], []
    # AUPRO at full resolution, in fixed memory: scores binned over [0, 4 x threshold]
    overlap = RegionOverlap(0.0, 4.0 * model.threshold)
    started = time.perf_counter()
    for p in paths:
        img = files.read_image(p)
        mp = find_mask(masks_dir, p)
        gt = np.zeros(img.shape[:2], bool)
        if mp:
            m = files.read_image(mp)
            if m.ndim == 3:
                m = m.max(axis=2)
            if m.shape != gt.shape:
                raise InputError(f"mask {mp} is {m.shape[1]}x{m.shape[0]} but image is {gt.shape[1]}x{gt.shape[0]}")
            gt = m > 0
        r = model.score(img)
        overlap.add(gt, r.heatmap)
        labels.append(bool(gt.any()))
        scores.append(r.score)
        # Pixel metrics on a 1/4 grid keep memory flat for big sets; exact for the sampled pixels.
        pix_y.append(gt[::4, ::4].ravel())
        pix_s.append(r.heatmap[::4, ::4].ravel())
        pix_p.append(r.mask[::4, ::4].ravel().astype(bool))
        if progress:
            progress(1)
    y = np.array(labels)
    s = np.array(scores)
    py, ps, pp = np.concatenate(pix_y), np.concatenate(pix_s), np.concatenate(pix_p)
    report = {
        "model_id": model.model_id,
        "images": len(paths), "anomalous_images": int(y.sum()), "good_images": int((~y).sum()),
        "threshold": model.threshold,
        "image_auroc": _nan_to_none(auroc(y, s)),
        "pixel_auroc": _nan_to_none(auroc(py, ps)),
        "aupro": _nan_to_none(overlap.value()),
        "image_f1": f1(y, s > model.threshold),
        "pixel_f1": f1(py, pp),
        "false_positive_images": int(((s > model.threshold) & ~y).sum()),
        "missed_images": int(((s <= model.threshold) & y).sum()),
        "pixel_sampling": 4,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if out_json:
        files.write_text(out_json, json.dumps(report, indent=2) + "\n")
    return report


def _nan_to_none(v: float) -> float | None:
    return None if v != v else v


def write_synthetic(out_dir: str, n_good: int, n_per_defect: int, shape: tuple[int, int] = (768, 768),
                    kind: str = "grey8", seed: int = 0, families=synthetic.DEFECT_TYPES, line: int | None = None,
                    contrast: float | None = None) -> tuple[str, str]:
    """A synthetic set on disk: ``images/`` and ``masks/`` (only for defective images); ``line``
    draws a varied module line (``synthetic.Variation.draw(line)``) instead of the classic one."""
    img_dir = os.path.join(out_dir, "images")
    mask_dir = os.path.join(out_dir, "masks")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    ext = ".tiff" if kind == "grey16" else ".png"
    variation = None if line is None else synthetic.Variation.draw(line)
    for name, s in synthetic.dataset(n_good, n_per_defect, shape, kind, seed, families, variation, contrast):
        files.write_image(os.path.join(img_dir, name + ext), s.image)
        if s.mask.any():
            files.write_image(os.path.join(mask_dir, name + "_mask.png"), s.mask * 255)
    return img_dir, mask_dir
