"""The REST server under a burst of clients: 200 at once asking GET /status, a base revision against this tree.

    python bench/http_load.py --base 564d2e3     # the revision before the server's deadlines and backlog

Each tree runs ``vi_stream run`` (a small model, no store, no camera) in a subprocess; then
``--clients`` asyncio clients each send ``--requests`` requests one after the other
(HTTP/1.0, a new connection each, as curl or a monitoring probe does), all starting at once.
A request with no answer within ``--timeout`` s counts as timed out; a 503 is the server
refusing at once (every connection slot taken), with Retry-After. Written to
bench/results/http_load.json (bench/report.py puts it in bench/README.md).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import common

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _model(folder: str) -> str:
    from vi_stream.model import ModelConfig, save
    from vi_stream.evaluation import synthetic
    from vi_stream.model import AnomalyModel
    m = AnomalyModel.fit((synthetic.module_image((256, 256), seed=700 + i).image for i in range(10)),
                         ModelConfig(bank_size=5000, cells=64))
    return save(m, os.path.join(folder, "model.npz"))


def _start(tree: str, model: str, state: str) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=tree, VI_STREAM_STATE_DIR=state)
    p = subprocess.Popen([sys.executable, "-m", "vi_stream.cli", "run", "tcp://127.0.0.1:9", "LOAD", "--model", model,
                          "--rest-port", "0", "--output-port", "0", "--store", "off"],
                         cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 180
    for line in p.stderr:
        m = re.search(r"ready: REST http://127.0.0.1:(\d+)", line)
        if m:
            return p, int(m.group(1))
        if time.monotonic() > end:
            break
    p.kill()
    raise SystemExit(f"vi_stream run in {tree} did not start: {p.stderr.read()[-2000:]}")


async def _one(port: int, timeout: float, source: str) -> tuple[str, float]:
    t = time.perf_counter()
    try:
        async def ask() -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            w.write(b"GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            await w.drain()
            data = await r.read()
            w.close()
            return data
        data = await asyncio.wait_for(ask(), timeout)
    except asyncio.TimeoutError:
        return "timeout", time.perf_counter() - t
    except OSError:
        return "error", time.perf_counter() - t
    code = data[9:12].decode(errors="replace") if data.startswith(b"HTTP/") else "error"
    return code, time.perf_counter() - t


async def _load(port: int, clients: int, requests: int, timeout: float, addresses: int) -> list[tuple[str, float]]:
    """``clients`` at once, each from one of ``addresses`` loopback addresses (127.0.0.2 and up): the
    server caps connections per address, so 200 clients from one address measure that cap, not a burst."""
    async def client(i: int) -> list[tuple[str, float]]:
        source = f"127.0.{(2 + i % addresses) // 256}.{(2 + i % addresses) % 256}"
        return [await _one(port, timeout, source) for _ in range(requests)]
    return [x for xs in await asyncio.gather(*(client(i) for i in range(clients))) for x in xs]


def _run(tree: str, model: str, a: argparse.Namespace) -> dict:
    state = tempfile.mkdtemp(prefix="vi-http-state-")
    p, port = _start(tree, model, state)
    threading_drain(p)
    try:
        t = time.perf_counter()
        out = asyncio.run(_load(port, a.clients, a.requests, a.timeout, a.addresses))
        wall = time.perf_counter() - t
    finally:
        p.terminate()
        p.wait(60)
        shutil.rmtree(state, ignore_errors=True)
    ok = np.sort([s for c, s in out if c == "200"])
    codes: dict[str, int] = {}
    for c, _ in out:
        codes[c] = codes.get(c, 0) + 1
    q = (lambda f: round(float(ok[min(len(ok) - 1, int(f * (len(ok) - 1) + 0.5))]), 3) if len(ok) else None)
    return {"requests": len(out), "answers": codes, "timed_out": codes.get("timeout", 0),
            "p50_s": q(0.5), "p99_s": q(0.99), "max_s": q(1.0), "wall_s": round(wall, 2)}


def threading_drain(p: subprocess.Popen) -> None:
    """Keep reading the daemon's stderr so it never blocks on a full pipe."""
    import threading
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=5, help="requests per client, one after the other")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a client waits for an answer")
    ap.add_argument("--addresses", type=int, default=200, help="loopback source addresses the clients come from")
    ap.add_argument("--rounds", type=int, default=2, help="base and this tree, alternating, this many times")
    a = ap.parse_args()
    with common.base_tree(a.base, "vi-http-") as (tree, tmp, rev, head):
        model = _model(tmp)
        runs = []
        for _ in range(a.rounds):       # alternating: the machine's load drifts between runs
            runs += [{"tree": f"base {rev}", **_run(tree, model, a)}, {"tree": f"this tree (HEAD {head})", **_run(ROOT, model, a)}]
    common.write("http_load", {"command": f"python bench/http_load.py --base {rev} --addresses {a.addresses}",
                               "addresses": a.addresses, "clients": a.clients,
                          "requests_per_client": a.requests, "timeout_s": a.timeout, "runs": runs})


if __name__ == "__main__":
    main()
