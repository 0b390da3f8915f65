"""The generalisation set's files and the outputs scored on them: one definition for both sides.

bench/genset.py writes the set, bench/generalise.py scores it with vi_stream and reads every
side's outputs, and bench/peer_anomalib.py scores it in anomalib's environment, where vi_stream is
not installed; so this module needs numpy and nothing of vi_stream.

    SET/set.json, SET/<split>.npy          images (and <family>_mask.npy), bench/genset.py
    OUT/<split>.npz                        scores (float32) and maps (float16, full size; none
                                           for ladder splits, whose scores are all that is read)
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable

import numpy as np

DESCRIPTION = "set.json"


def describe(set_dir: str, desc: dict) -> None:
    with open(os.path.join(set_dir, DESCRIPTION), "w") as f:
        json.dump(desc, f, indent=1)


def load(set_dir: str) -> dict:
    with open(os.path.join(set_dir, DESCRIPTION)) as f:
        return json.load(f)


def stack(set_dir: str, name: str) -> np.ndarray:
    return np.load(os.path.join(set_dir, f"{name}.npy"), mmap_mode="r")


def save_stack(set_dir: str, name: str, images) -> None:
    np.save(os.path.join(set_dir, f"{name}.npy"), np.stack(list(images)))


def ladder(family: str) -> str:
    return f"ladder_{family}"


CALIBRATION = "calibration"   # held-out good images a side sets its threshold on (bench/sealed.py's sets)


def scored_splits(families, ladders: bool = True, calibration: bool = False) -> list[str]:
    return ([CALIBRATION] if calibration else []) + ["good", *families,
                                                     *((ladder(f) for f in families) if ladders else ())]


def outputs(out_dir: str, name: str):
    return np.load(os.path.join(out_dir, f"{name}.npz"))


def newer_than_set(path: str, set_dir: str) -> bool:
    return os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(os.path.join(set_dir, DESCRIPTION))


def score_splits(set_dir: str, out_dir: str, families, score: Callable[[np.ndarray], tuple[float, np.ndarray]],
                 log: Callable[[str, list[float]], None] | None = None, ladders: bool = True) -> tuple[float, int]:
    """Scores every test split's images (the ladders' too, unless ``ladders`` is False, and the
    CALIBRATION split where the set's description says it has one) with ``score(image) -> (score,
    map)`` and writes OUT/<split>.npz. Returns the seconds spent inside ``score`` and the pixels it
    scored."""
    os.makedirs(out_dir, exist_ok=True)
    seconds, pixels = 0.0, 0
    for name in scored_splits(families, ladders, bool(load(set_dir).get(CALIBRATION))):
        keep_maps = not name.startswith(ladder(""))
        scores, maps = [], []
        for img in stack(set_dir, name):
            t = time.perf_counter()
            s, m = score(img)
            seconds += time.perf_counter() - t
            pixels += img.shape[0] * img.shape[1]
            scores.append(s)
            if keep_maps:
                maps.append(np.asarray(m, np.float16))
        np.savez(os.path.join(out_dir, f"{name}.npz"), scores=np.array(scores, np.float32),
                 maps=np.stack(maps) if maps else np.zeros((0, 1, 1), np.float16))
        if log:
            log(name, scores)
    return seconds, pixels
