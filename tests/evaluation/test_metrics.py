import math

import numpy as np
import pytest

from vi_stream.evaluation.metrics import auroc, auroc_of, f1


def test_auroc_known_values():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auroc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8]) == 0.75
    assert auroc([0, 1], [0.5, 0.5]) == 0.5  # ties count half
    assert math.isnan(auroc([1, 1], [0.1, 0.2]))
    # good against defective scores: 0.5 0.9 against 1.2 0.6 0.95, 5 of 6 pairs ranked right
    assert auroc_of([0.5, 0.9], [1.2, 0.6, 0.95]) == pytest.approx(5 / 6)
    assert auroc_of([0.5], [0.5]) == 0.5 and math.isnan(auroc_of([], [0.3]))


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


def _aupro_reference(masks, maps, limit=0.3):
    """Straight from the definition: every distinct score as a threshold, regions labelled one by one."""
    import cv2
    regions, good = [], []
    for m, a in zip(masks, maps):
        n, lab = cv2.connectedComponents((m > 0).astype(np.uint8), connectivity=8)
        regions += [a[lab == r] for r in range(1, n)]
        good.append(a[m == 0])
    good = np.concatenate(good)
    ts = np.unique(np.concatenate([good] + regions))[::-1]
    fpr = [0.0] + [float((good >= t).mean()) for t in ts]
    pro = [0.0] + [float(np.mean([(r >= t).mean() for r in regions])) for t in ts]
    return np.interp(np.linspace(0, limit, 20001), fpr, pro).mean()   # fine trapezoid of the same curve


def test_aupro_equals_its_definition():
    from vi_stream.evaluation.metrics import aupro
    rng = np.random.default_rng(3)
    masks, maps = [], []
    for i in range(4):
        m = np.zeros((40, 50), np.uint8)
        if i:
            m[5:5 + 3 * i, 7:20] = 1          # regions of different sizes
            m[30:32, 40:42] = 1
        a = rng.random((40, 50)) + 0.8 * m + 0.1 * rng.random() * m
        masks.append(m)
        maps.append(np.round(a, 3))          # ties, as real maps have
    assert aupro(masks, maps) == pytest.approx(_aupro_reference(masks, maps), abs=2e-3)


def test_aupro_weighs_regions_not_pixels():
    """A large defect found and a small one missed: pixel AUROC stays high, AUPRO halves."""
    from vi_stream.evaluation.metrics import aupro
    m = np.zeros((100, 100), np.uint8)
    m[10:60, 10:60] = 1                      # 2,500 px, found
    m[80:86, 80:86] = 1                      # 36 px, missed
    rng = np.random.default_rng(0)
    a = rng.random((100, 100)) * 0.5
    a[10:60, 10:60] += 1.0
    assert auroc(m, a) > 0.95
    assert aupro([m], [a]) == pytest.approx(0.5 + 0.5 * 0.15, abs=0.04)   # the missed one is at chance
    perfect = m.astype(float)
    assert aupro([m], [perfect]) == pytest.approx(1.0)
    assert aupro([m], [rng.random((100, 100))]) == pytest.approx(0.15, abs=0.04)   # chance: about limit / 2


def test_aupro_needs_both_kinds_of_pixel_and_a_range():
    from vi_stream.evaluation.metrics import RegionOverlap, aupro
    assert math.isnan(aupro([np.zeros((4, 4))], [np.ones((4, 4))]))
    with pytest.raises(ValueError, match="hi > lo"):
        RegionOverlap(1.0, 1.0)
    with pytest.raises(ValueError, match="shape"):
        RegionOverlap(0, 1).add(np.zeros((4, 4)), np.zeros((4, 5)))
