"""Start-up of the commands that score nothing: wall time from exec to exit, in a fresh interpreter.

    python bench/startup.py --base 16fd2b4     # the revision before the command line's lazy imports

Each command (``vi_stream --help``, ``models list`` and ``batch list`` on an empty local store,
``merge --help``, ``run --help``) runs ``--repeat`` times as ``python -m vi_stream.cli ...`` in a
subprocess, the trees and commands interleaved so the machine's drift falls on all alike, after one
unmeasured warm-up each (it writes the bytecode and fills the page cache, as any second start has).
Medians and ranges of the wall time, the median CPU time (user + system: it holds still
when the machine is loaded) and whether torch or numba was imported (``-X importtime``), are written to
bench/results/startup.json (bench/report.py puts them in bench/README.md). The target (issue 26) is
under 0.5 s for a command that does not score.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {"vi_stream --help": ["--help"], "models list": ["models", "list", "--store", "{store}"],
            "batch list": ["batch", "list", "--store", "{store}"], "merge --help": ["merge", "--help"],
            "run --help": ["run", "--help"]}
HEAVY = ("torch", "numba")


def _argv(command: str, store: str) -> list[str]:
    return [sys.executable, "-m", "vi_stream.cli", *(a.format(store=store) for a in COMMANDS[command])]


def _env(tree: str, tmp: str) -> dict:
    # The tree's package first; the state directory in tmp so no default store is touched.
    return {**os.environ, "PYTHONPATH": tree, "VI_STREAM_STATE_DIR": os.path.join(tmp, "state")}


def _once(tree: str, command: str, tmp: str) -> tuple[float, float]:
    """(wall s, CPU s) of one run: the CPU time (user + system, the child's own) holds still when
    the machine is loaded; the wall time is what a user waits."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    p = subprocess.run(_argv(command, os.path.join(tmp, "store")), env=_env(tree, tmp), cwd=tmp,
                       capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{command} in {tree}: rc {p.returncode}\n{p.stderr}")
    return took, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def _heavy(tree: str, command: str, tmp: str) -> list[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", *_argv(command, os.path.join(tmp, "store"))[1:]],
                       env=_env(tree, tmp), cwd=tmp, capture_output=True, text=True, timeout=120)
    names = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in names]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="git revision to compare with (default: this tree alone)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs of each command in each tree (7)")
    a = ap.parse_args()
    with contextlib.ExitStack() as stack:
        trees = []
        if a.base:
            tree, _tmp, rev, head = stack.enter_context(common.base_tree(a.base, "vi-startup-"))
            trees.append((f"base {rev}", tree))
        else:
            head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                  text=True).stdout.strip()
        trees.append((f"this tree (HEAD {head})", ROOT))
        tmps = {name: stack.enter_context(tempfile.TemporaryDirectory(prefix="vi-startup-")) for name, _ in trees}
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for name, tree in trees:
            for c in COMMANDS:
                _once(tree, c, tmps[name])                                  # warm-up, not counted
        for _ in range(a.repeat):
            for c in COMMANDS:
                for name, tree in trees:
                    times.setdefault((name, c), []).append(_once(tree, c, tmps[name]))
        runs = [{"tree": name, "command": c, "median_s": round(statistics.median(ts), 3),
                 "min_s": round(min(ts), 3), "max_s": round(max(ts), 3), "runs": len(ts),
                 "cpu_median_s": round(statistics.median(cs), 3), "imports": _heavy(tree, c, tmps[name])}
                for name, tree in trees for c in COMMANDS for ts, cs in [zip(*times[(name, c)])]]
    common.write("startup", {"command": "python bench/startup.py" + (f" --base {rev}" if a.base else ""),
                             "repeat": a.repeat, "target_s": 0.5, "runs": runs})


if __name__ == "__main__":
    main()
