"""Shared helpers for benchmarks: environment, result files."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time


HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def machine() -> dict:
    import torch
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}


def write(name: str, result: dict, folder: str | None = None) -> str:
    """``result`` with the machine's description as ``folder``/``name``.json (folder: RESULTS)."""
    folder = folder or RESULTS
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), **result}, f, indent=2)
    print(json.dumps(result, indent=2))
    return path


def recorded_config(model) -> dict:
    """A fitted model's settings as a record keeps them (bench/report.py reads them back with
    vi_stream.model.config.saved_settings): the model file's config, less the seed, with the folds
    and the confidence its threshold rule names (a model file keeps them there, not in its config)."""
    from vi_stream.model.config import rule_settings
    maps = model.lattice.get("maps") if model.lattice.get("enabled") else None
    if maps:
        lattice = {"lattice_maps": list(maps), "lattice_reach": model.lattice.get("reach_px", 0)}
    else:          # the setting on, but the fit found the lattice on too few good images: it computed none
        lattice = {"lattice_maps": []} if model.config.lattice else {}
    return {**{k: v for k, v in model.meta["config"].items() if k != "seed"},
            **rule_settings(model.meta["threshold_rule"]), **lattice}


def read(name: str, machine: bool = False, folder: str | None = None) -> dict:
    """The last results written under ``name`` in ``folder`` (RESULTS by default), without the machine
    block unless ``machine``, or {}."""
    try:
        with open(os.path.join(folder or RESULTS, f"{name}.json")) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    if not machine:
        d.pop("machine", None)
    return d


def model_for(size: int, n_good: int = 10, config=None):
    """A model fitted on ``n_good`` good synthetic modules of ``size`` x ``size``, as a user would fit
    one for the images they score (a model fitted on another size scores out of distribution);
    ``config`` a ModelConfig (the defaults when None)."""
    from vi_stream.evaluation import synthetic
    from vi_stream.model import AnomalyModel, ModelConfig
    return AnomalyModel.fit((synthetic.module_image((size, size), seed=500 + i).image for i in range(n_good)),
                            config or ModelConfig())


def _short(rev: str, root: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


@contextlib.contextmanager
def base_tree(rev: str, prefix: str = "vi-ab-"):
    """Another revision checked out beside this one, for an interleaved A/B: yields (tree, tmp folder,
    the revision's short name, HEAD's); the worktree and the folder are removed afterwards."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    short, head = _short(rev, root), _short("HEAD", root)
    tmp = tempfile.mkdtemp(prefix=prefix)
    tree = os.path.join(tmp, "base")
    subprocess.run(["git", "worktree", "add", "--detach", tree, short], cwd=root, check=True, capture_output=True)
    try:
        yield tree, tmp, short, head
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=root, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
