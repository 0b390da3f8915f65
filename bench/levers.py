"""Scoring speed of model settings side by side, interleaved: a speed lever's A/B (issue 28, section 3).

    python bench/levers.py [--sizes 768 2048] [--rounds 7] [--variant LABEL k=v ...]
                           [--peer-python PY [--peer-norm tflite] [--peer-coreset 0.01]]

One model per variant (the defaults first, then each ``--variant``: a label and ModelConfig
overrides; without any, a larger tile and the kNN map alone), fitted on the same good images of
the tuning line; then, per image size, rounds in which every model scores the same image once,
in turn (each round starting with the next one), so the machine's drift falls on all of them
alike. Reported per variant and size: the median megapixels per second with its
range, the median per-round ratio of its time to the default's, and the median seconds of each
part (backbone, search, lattice, ...). Quality of the same variants: bench/structural.py (tuning
figures).

With ``--peer-python`` (bench/setup_peer.sh) anomalib's PatchCore takes its turn in every round
too (bench/peer_speed.py, a process of its own that scores the same image when asked), and each of
our variants gets the median per-round ratio of the peer's time to its own (``times_peer``). The
peer fits on the same training images, as many as keep its patches (at its stride of 8) within
``--peer-patches``: its greedy coreset takes minutes per 100,000 patches on two cores. A smaller
memory bank makes its exhaustive search faster, so the cap can only flatter the peer.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time

import common
import generalise
import genset
import numpy as np

from vi_stream.model import AnomalyModel, ModelConfig

# s after the peer's turn, for its thread pools to go quiet: they kept spinning into our next turn and
# slowed whichever of ours came first by a tenth or more. Both sides are then timed warm: ours after
# an untimed score, the peer's on its second of two calls (bench/peer_speed.py)
PAUSE = 0.2
DEFAULT_VARIANTS = (("tile-512", ("tile=512", "overlap=64")), ("knn-only", ("lattice=False",)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[768, 2048])
    ap.add_argument("--train", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--variant", nargs="+", action="append", metavar="LABEL [k=v ...]")
    ap.add_argument("--peer-python", help="interpreter of the anomalib environment (bench/setup_peer.sh)")
    ap.add_argument("--peer-norm", choices=("imagenet", "tflite"), default="tflite")
    ap.add_argument("--peer-coreset", type=float, default=0.01)
    ap.add_argument("--peer-patches", type=int, default=200_000,
                    help="the peer fits on as many training images as keep its patches within this")
    a = ap.parse_args()
    variants = [("default", ())] + ([(v[0], tuple(v[1:])) for v in a.variant] if a.variant else list(DEFAULT_VARIANTS))
    out = {}
    for size in a.sizes:
        shape = (size, size)
        train = [genset.image(shape, 10_000 + i, 7).image for i in range(a.train)]
        img = genset.image(shape, 31_000, 7, ("scratch", "dust"), 0.5).image
        models = {label: AnomalyModel.fit(train, generalise._override(ModelConfig(), items))
                  for label, items in variants}
        for m in models.values():
            m.score(img)                       # warm-up: tracing, numba
        times = {label: [] for label in models}
        parts = {label: {} for label in models}
        with _Peer(a, train, img) if a.peer_python else contextlib.nullcontext() as peer:
            turns = list(models)
            for n in range(a.rounds):
                if peer:
                    times.setdefault("peer", []).append(peer.score())
                    time.sleep(PAUSE)
                    models["default"].score(img)       # untimed: our pools awake again, as the peer's are
                for label in turns[n % len(turns):] + turns[:n % len(turns)]:   # each round starts one later
                    t = time.perf_counter()
                    r = models[label].score(img)
                    times[label].append(time.perf_counter() - t)
                    for k, v in r.timings.items():
                        parts[label].setdefault(k, []).append(v)
        mp = img.shape[0] * img.shape[1] / 1e6
        rows = {}
        for label, items in variants:
            rows[label] = {"overrides": list(items),   # and the whole config: the defaults change over time
                           "config": common.recorded_config(models[label]),
                           **_speed(mp, times[label], times["default"]),
                           "parts_ms": {k: round(1e3 * statistics.median(v), 1) for k, v in parts[label].items()}}
            if peer:
                rows[label]["times_peer"] = round(statistics.median(
                    [p / t for p, t in zip(times["peer"], times[label])]), 2)
        if peer:
            rows["patchcore"] = {**peer.fit, **_speed(mp, times["peer"], times["default"])}
        out[str(size)] = rows
    common.write("levers", {"command": "python bench/levers.py" + (f" --sizes {' '.join(map(str, a.sizes))}"
                                                                   if a.sizes != [768, 2048] else "")
                            + f" --rounds {a.rounds}" + "".join(" --variant " + " ".join(v) for v in a.variant or ())
                            + (f" --peer-python PEER --peer-norm {a.peer_norm} --peer-coreset {a.peer_coreset}"
                               f" --peer-patches {a.peer_patches}" if a.peer_python else ""),
                            "rounds": a.rounds, "train": a.train, "per_size": out})


def _speed(mp: float, times: list[float], default: list[float]) -> dict:
    speeds = [mp / t for t in times]
    return {"mp_per_s": round(statistics.median(speeds), 2),
            "mp_per_s_range": [round(min(speeds), 2), round(max(speeds), 2)],
            "time_vs_default": round(statistics.median([t / t0 for t, t0 in zip(times, default)]), 3)}


class _Peer:
    """bench/peer_speed.py in the peer's environment, fitted on the training images that fit
    ``--peer-patches``; ``score()`` has it score the image and returns its seconds. The process and
    its folder are cleaned up however the run ends."""

    def __init__(self, a, train: list, img) -> None:
        per_image = (img.shape[0] // 8) * (img.shape[1] // 8)
        self.n = max(1, min(len(train), a.peer_patches // per_image))
        self.args = [a.peer_python, os.path.join(common.HERE, "peer_speed.py"), "",
                     "--norm", a.peer_norm, "--coreset", str(a.peer_coreset)]
        self.train, self.img = np.stack(train[:self.n]), img
        self.proc = None

    def __enter__(self) -> "_Peer":
        self.tmp = tempfile.TemporaryDirectory(prefix="vi-peer-speed-")
        try:
            np.save(os.path.join(self.tmp.name, "train.npy"), self.train)
            np.save(os.path.join(self.tmp.name, "image.npy"), self.img)
            self.args[2] = self.tmp.name
            self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "TQDM_DISABLE": "1"})  # no coreset progress bar
            self.fit = json.loads(self._line("before it was ready"))
        except BaseException:
            self.__exit__()
            raise
        return self

    def _line(self, when: str) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the peer ended {when} (exit {self.proc.wait()}): {' '.join(self.args)}")
        return line

    def score(self) -> float:
        self.proc.stdin.write("score\n")
        self.proc.stdin.flush()
        line = self._line("mid-run")
        try:
            return float(line)
        except ValueError:
            raise SystemExit(f"the peer answered {line.strip()[:200]!r}, not a time") from None

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()


if __name__ == "__main__":
    main()
