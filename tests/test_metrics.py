import math

import numpy as np
import pytest

from vi_stream.metrics import auroc, f1


def test_auroc_known_values():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auroc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8]) == 0.75
    assert auroc([0, 1], [0.5, 0.5]) == 0.5  # ties count half
    assert math.isnan(auroc([1, 1], [0.1, 0.2]))


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300), 2)  # plenty of ties
    pos, neg = s[y], s[~y]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(y, s) == pytest.approx(pairwise)


def test_f1():
    assert f1([1, 1, 0, 0], [1, 0, 1, 0]) == 0.5
    assert f1([0, 0], [0, 0]) == 0.0
