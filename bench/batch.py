"""A backlog on Slurm against the same images scored locally.

    python bench/batch.py [--images 96] [--size 768] [--pairs 2]

Starts the single-node test cluster the tests use (munged, slurmctld, slurmd on loopback,
and an sshd; needs root and Debian's slurm packages), then alternates:

* local: ``vi_stream score`` on the folder (one process, two threads);
* batch: ``vi_stream batch`` over SSH with two array tasks of one CPU each, from staging
  by SFTP to every result ingested into a local store.

Reported: images/s of each and the ratio batch/local per pair (target >= 80%); the batch's
time split into staging + submission, waiting for the tasks, and ingestion.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2

import common

sys.path.insert(0, os.path.dirname(common.HERE))
from tests.helpers.cluster import slurm_available, sshd, start_slurm, stop  # noqa: E402
from vi_stream.evaluation import synthetic  # noqa: E402
from vi_stream.scale.batch import BatchOptions, BatchRun  # noqa: E402
from vi_stream.store.local import LocalStore  # noqa: E402
from vi_stream.io.slurm import SshShell  # noqa: E402
from vi_stream.model import save  # noqa: E402


def local(model: str, folder: str) -> float:
    out = tempfile.mkdtemp(prefix="vi-bench-local-")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vi_stream.cli", "score", "--model", model, "--images", folder, "--out", out,
                    "--no-progress"], check=True, capture_output=True)
    return time.perf_counter() - t0


def batch(model: str, inputs: list[str], settings, env: dict) -> tuple[float, dict]:
    work = tempfile.mkdtemp(prefix="vi-bench-batch-")
    store = LocalStore(os.path.join(work, "store")).start()
    shell = SshShell(settings, env)
    try:
        opts = BatchOptions(os.path.join(work, "remote"), tasks=2, command=f"{sys.executable} -m vi_stream.cli",
                            poll_s=0.5)
        t0 = time.perf_counter()
        run = BatchRun(store, shell, model, None, inputs, opts, os.path.join(work, "spool"), "bench")
        doc = run.run(timeout=1800)
        elapsed = time.perf_counter() - t0
        assert doc["state"] == "done" and store.count_results() == len(inputs), doc
        return elapsed, doc
    finally:
        shell.close()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--pairs", type=int, default=2)
    a = ap.parse_args()
    why = slurm_available()
    if why:
        raise SystemExit(f"bench/batch.py: {why}")
    import pathlib
    d = pathlib.Path(tempfile.mkdtemp(prefix="vi-bench-cluster-"))
    folder = d / "images"
    folder.mkdir()
    for i in range(a.images):
        img = synthetic.module_image((a.size, a.size), seed=7000 + i, defects=("scratch",) if i % 4 == 1 else ()).image
        cv2.imwrite(str(folder / f"B-{i:03d}.png"), img)
    inputs = sorted(str(p) for p in folder.iterdir())
    fitted = common.model_for(a.size)
    model = save(fitted, str(d / "model.npz"))
    procs = []
    try:
        ssh_proc, settings = sshd(d, "")
        procs.append(ssh_proc)
        env, slurm, _host = start_slurm(d)
        procs += slurm
        rows = []
        for k in range(a.pairs):
            t_local = local(model, str(folder))
            t_batch, doc = batch(model, inputs, settings, env)
            rows.append({"local_s": round(t_local, 2), "batch_s": round(t_batch, 2),
                         "local_images_per_s": round(a.images / t_local, 3),
                         "batch_images_per_s": round(a.images / t_batch, 3), "ratio": round(t_local / t_batch, 4),
                         "jobs": len(doc["jobs"])})
            print(rows[-1], file=sys.stderr)
    finally:
        for p in reversed(procs):
            stop(p)
    ratios = [r["ratio"] for r in rows]
    common.write("batch", {"images": a.images, "size": a.size, "tasks": 2, "pairs": rows,
                           "ratio_median": round(statistics.median(ratios), 4),
                           "ratio_range": [min(ratios), max(ratios)]})


if __name__ == "__main__":
    main()
