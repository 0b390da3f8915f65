"""Soak: many frames through a real `vi_stream run` process with the store on; RSS and open files.

    python bench/soak.py [--frames 10000] [--size 256]

A simulated camera sends as fast as the daemon takes frames (its ZMQ high-water mark holds
the rest); the daemon scores every frame with a model fitted on good images of the same size
and stores every result in a local store (whole images, no tiles). Every 2 s the daemon's
resident memory and open file descriptors are read from /proc. The verdict: the last
quarter's mean RSS within 2% of the second quarter's (the first quarter is warm-up:
allocator pools, numba and torch caches filling).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import requests

import common
from vi_stream.model import save
from vi_stream.evaluation.simulate import Simulator


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _stats(port: int) -> dict:
    return requests.get(f"http://127.0.0.1:{port}/statistics", timeout=10).json()["statistics"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vi-soak-") as tmp:
        model_path = save(common.model_for(args.size, 10), os.path.join(tmp, "model.npz"))
        sim = Simulator(0, "SOAK", fps=1000, shape=(args.size, args.size), pool=8)
        port = sim.start()
        with socket_port() as rest_port:
            pass
        env = dict(os.environ, VI_STREAM_STATE_DIR=os.path.join(tmp, "state"))
        p = subprocess.Popen([sys.executable, "-m", "vi_stream.cli", "run", f"tcp://127.0.0.1:{port}", "SOAK",
                              "--model", model_path, "--rest-port", str(rest_port), "--output-port", "0",
                              "--auto-start", "--no-store-tiles", "--log-level", "WARNING"],
                             env=env, stderr=subprocess.PIPE, text=True)
        samples = []
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    _stats(rest_port)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline or p.poll() is not None:
                        raise SystemExit(f"daemon did not come up: {p.stderr.read()[-2000:]}")
                    time.sleep(0.5)
            sim.run_in_thread(args.frames)
            t0 = time.monotonic()
            while True:
                s = _stats(rest_port)
                samples.append({"t": round(time.monotonic() - t0, 1), "frames": s["frames_processed"],
                                "stored": s["store"]["stored"], "rss_mb": round(_rss_mb(p.pid), 1),
                                "fds": _fds(p.pid)})
                print(samples[-1], flush=True)
                if s["store"]["stored"] >= args.frames:
                    break
                if time.monotonic() - t0 > 4 * 3600:
                    raise SystemExit("soak did not finish within 4 hours")
                time.sleep(args.every)
            final = _stats(rest_port)
            p.send_signal(signal.SIGTERM)
            p.wait(60)
        finally:
            if p.poll() is None:
                p.kill()
            sim.close()
    _report(args, samples, final, p.returncode)


def _report(args, samples: list[dict], final: dict, rc: int) -> None:
    n = len(samples)
    q = n // 4
    second = [x["rss_mb"] for x in samples[q:2 * q]]
    last = [x["rss_mb"] for x in samples[3 * q:]]
    m2, m4 = sum(second) / len(second), sum(last) / len(last)
    step = max(1, n // 60)
    common.write("soak", {
        "command": f"python bench/soak.py --frames {args.frames} --size {args.size}",
        "frames": args.frames, "size": args.size,
        "seconds": samples[-1]["t"],
        "frames_per_s": round(final["frames_processed"] / max(samples[-1]["t"], 1e-9), 2),
        "processed": final["frames_processed"], "stored": final["store"]["stored"],
        "rejected": final["frames_rejected_total"], "lost": final["store"]["lost"],
        "rss_mb": {"first": samples[0]["rss_mb"], "second_quarter_mean": round(m2, 1),
                   "last_quarter_mean": round(m4, 1), "max": max(x["rss_mb"] for x in samples),
                   "last_vs_second": round(m4 / m2 - 1, 4)},
        "fds": {"min": min(x["fds"] for x in samples), "max": max(x["fds"] for x in samples),
                "last": samples[-1]["fds"]},
        "flat": abs(m4 / m2 - 1) <= 0.02,
        "exit_code": rc,
        "curve": samples[::step],
    })


class socket_port:
    """A free TCP port on 127.0.0.1 (closed again before the daemon binds it)."""

    def __enter__(self) -> int:
        import socket
        self._s = socket.socket()
        self._s.bind(("127.0.0.1", 0))
        return self._s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self._s.close()


if __name__ == "__main__":
    main()
