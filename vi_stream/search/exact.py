"""Exhaustive nearest-neighbour distance: the reference the index is held to."""
from __future__ import annotations

import numpy as np

def exact_nn_distance(q: np.ndarray, bank: np.ndarray, max_block: int = 1 << 25) -> np.ndarray:
    """Exhaustive nearest-neighbour distance: the reference our index is held to
    (PatchCore without its coreset approximation). Brute force via BLAS."""
    import torch

    b = torch.from_numpy(np.ascontiguousarray(bank, np.float32))
    b_sq = (b * b).sum(1)
    chunk = max(1, max_block // max(1, len(bank)))  # bounds the distance block to ~128 MB
    out = []
    for i in range(0, len(q), chunk):
        x = torch.from_numpy(np.ascontiguousarray(q[i:i + chunk], np.float32))
        d = (x * x).sum(1, keepdim=True) - 2 * x @ b.T + b_sq
        out.append(d.amin(1).clamp_min(0).sqrt())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)
