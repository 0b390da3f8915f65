"""Peak memory of fitting on 1000 training tiles (run in a child process so the
peak is the fit's own).

    python bench/memory.py [--tiles 1000] [--config k=v ...]

``--config`` sets ModelConfig fields (with the lattice score, the default, its maps of every good image are in
the peak; ``lattice=False`` leaves them out).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace

import common
import generalise

from vi_stream.model import ModelConfig

CHILD = r"""
import dataclasses, resource, sys, time, json
from vi_stream.evaluation import synthetic
from vi_stream.model import AnomalyModel, ModelConfig
n_images = int(sys.argv[1])
cfg = dataclasses.replace(ModelConfig(), **{k: tuple(v) if isinstance(v, list) else v   # JSON has no tuples
                                             for k, v in json.loads(sys.argv[2]).items()})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
imgs = (synthetic.module_image((768, 768), seed=i).image for i in range(n_images))
m = AnomalyModel.fit(imgs, cfg)
print(json.dumps({"rss_before_fit_mb": before / 1024, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "fit_seconds": time.perf_counter() - t, "training_tiles": m.meta["training_tiles"],
                  "training_patches": m.meta["training_patches"], "bank": m.meta["bank_patches"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=1000)
    ap.add_argument("--config", nargs="+", default=[], metavar="k=v", help="ModelConfig fields (lattice=False)")
    a = ap.parse_args()
    n_images = -(-a.tiles // 9)  # 768x768 -> 9 tiles of 320 px with 64 px overlap (the tiles fitted are reported)
    changes = generalise.overrides(a.config)
    try:
        replace(ModelConfig(), **changes).validate()   # a bad setting said here, not by the child
    except (TypeError, ValueError) as err:
        raise SystemExit(f"--config: {err}")
    p = subprocess.run([sys.executable, "-c", CHILD, str(n_images), json.dumps(changes)], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"the fit failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    if not p.stdout.strip():
        raise SystemExit(f"the fit printed nothing:\n{p.stderr[-2000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res = {k: round(v, 1) if isinstance(v, float) else v for k, v in res.items()}
    common.write("memory", {"command": "python bench/memory.py" + (f" --tiles {a.tiles}" if a.tiles != 1000 else "")
                            + (" --config " + " ".join(a.config) if a.config else ""),
                            "config": list(a.config), "images": n_images, **res})


if __name__ == "__main__":
    main()
