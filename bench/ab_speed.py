"""bench/speed.py for another revision and this tree, interleaved: did a change move the figures?

    python bench/ab_speed.py --base REV [--rounds 2]

Checks REV out into a temporary git worktree, then runs its bench/speed.py and ours in turn,
``--rounds`` times (base, ours, base, ours, ...), so both see the same phases of this
VM's drifting speed. The share of scoring time outside the backbone is the fair comparison
(the backbone's own speed drifts by ±30% between runs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import common

ROOT = os.path.dirname(common.HERE)


def _run(tree: str) -> dict:
    bench = os.path.join(tree, "bench")
    env = dict(os.environ, PYTHONPATH=tree)
    subprocess.run([sys.executable, os.path.join(bench, "speed.py")], cwd=bench, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(bench, "results", "speed.json")) as f:
        d = json.load(f)
    out = {"fit_seconds": d["fit"]["seconds"]}
    for key in ("score_768", "score_2048"):
        s = d[key]
        out[key] = {"megapixels_per_s": s["megapixels_per_s"], "outside_backbone_fraction": s["outside_backbone_fraction"],
                    "backbone_ms": round(1e3 * s["split_seconds"]["backbone"], 1),
                    "search_ms": round(1e3 * s["split_seconds"]["search"], 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    ours_results = os.path.join(common.RESULTS, "speed.json")
    keep = open(ours_results).read() if os.path.exists(ours_results) else None
    runs = []
    try:
        with common.base_tree(a.base, "vi-ab-") as (tree, _tmp, rev, head):
            for _ in range(a.rounds):
                runs.append({"tree": f"base {rev}", **_run(tree)})
                runs.append({"tree": f"this tree (HEAD {head})", **_run(ROOT)})
    finally:
        if keep is not None:             # speed.json stays the recorded run of bench/speed.py itself
            with open(ours_results, "w") as f:
                f.write(keep)
    common.write("ab_speed", {"command": f"python bench/ab_speed.py --base {a.base} --rounds {a.rounds}",
                              "base": rev, "head": head, "runs": runs})


if __name__ == "__main__":
    main()
