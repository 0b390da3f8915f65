"""Shared helpers for benchmarks: environment, result files."""
from __future__ import annotations

import json
import os
import platform
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


def write(name: str, result: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), **result}, f, indent=2)
    print(json.dumps(result, indent=2))
    return path


def read(name: str) -> dict:
    """The last results written under ``name`` (without the machine block), or {}."""
    try:
        with open(os.path.join(RESULTS, f"{name}.json")) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    d.pop("machine", None)
    return d


def model_for(size: int, n_good: int = 10):
    """A model fitted on ``n_good`` good synthetic modules of ``size`` x ``size``, as a user would fit
    one for the images they score (a model fitted on another size scores out of distribution)."""
    from vi_stream import synthetic
    from vi_stream.model import AnomalyModel, ModelConfig
    return AnomalyModel.fit((synthetic.module_image((size, size), seed=500 + i).image for i in range(n_good)),
                            ModelConfig())
