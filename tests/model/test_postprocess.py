import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vi_stream.model import postprocess


def reference_defects(heat, threshold, min_area):
    """The plain definition: label the whole mask, drop small regions, peak = max heat inside."""
    mask = (heat > threshold).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            mask[labels == i] = 0
            continue
        out.append({"bbox": [x, y, w, h], "area": area, "peak": round(float(heat[labels == i].max()), 6),
                    "centroid": [round(float(cents[i][0]), 2), round(float(cents[i][1]), 2)]})
    out.sort(key=lambda d: -d["peak"])
    return mask, out


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 120), w=st.integers(1, 120), seed=st.integers(0, 10_000),
       q=st.floats(0.5, 1.0), min_area=st.integers(1, 30))
def test_defects_from_equals_labelling_the_whole_mask(h, w, seed, q, min_area):
    rng = np.random.default_rng(seed)
    heat = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32) * 10, (0, 0), 1.5)
    thr = float(np.quantile(heat, q))
    mask, defects = postprocess.defects_from(heat, thr, min_area)
    ref_mask, ref = reference_defects(heat, thr, min_area)
    assert mask.dtype == np.uint8 and mask.shape == heat.shape
    assert np.array_equal(mask, ref_mask)
    assert sorted(d["bbox"] for d in defects) == sorted(d["bbox"] for d in ref)
    key = {tuple(d["bbox"]): d for d in ref}
    for d in defects:
        r = key[tuple(d["bbox"])]
        assert {k: v for k, v in d.items() if k != "centroid"} == {k: v for k, v in r.items() if k != "centroid"}
        # centroids are computed within the labelled crop, then shifted: equal up to rounding
        assert np.allclose(d["centroid"], r["centroid"], atol=0.0101)
        assert all(type(v) is float for v in d["centroid"]) and type(d["peak"]) is float
    assert [d["peak"] for d in defects] == sorted((d["peak"] for d in defects), reverse=True)


def test_defects_far_apart_on_a_large_map_keep_their_positions():
    heat = np.zeros((2048, 2048), np.float32)
    heat[5:9, 7:12] = 3.0        # 20 px, kept
    heat[2000:2010, 1990:2001] = 5.0
    heat[1000, 1000] = 9.0       # 1 px, below min_area: dropped from mask and list
    mask, defects = postprocess.defects_from(heat, 1.0, min_area=16)
    assert [d["bbox"] for d in defects] == [[1990, 2000, 11, 10], [7, 5, 5, 4]]
    assert [d["peak"] for d in defects] == [5.0, 3.0]
    assert defects[1]["centroid"] == [9.0, 6.5]
    assert mask[1000, 1000] == 0 and int(mask.sum()) == 20 + 110


def test_nothing_above_threshold_is_an_empty_mask_and_list():
    mask, defects = postprocess.defects_from(np.ones((64, 48), np.float32), 2.0)
    assert defects == [] and mask.shape == (64, 48) and not mask.any()


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), seed=st.integers(0, 10_000), density=st.floats(0.0, 0.2))
def test_label_boxes_are_tight_disjoint_and_cover_the_mask(h, w, seed, density):
    # Scattered pixels and blobs: every mask pixel lies in exactly one box, and no box has an
    # empty row or column (the cutting went all the way down).
    rng = np.random.default_rng(seed)
    mask = (rng.random((h, w)) < density).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((2, 2), np.uint8)) if seed % 2 else mask
    boxes = postprocess._boxes(mask)
    cover = np.zeros((h, w), np.int32)
    for y0, y1, x0, x1 in boxes:
        crop = mask[y0:y1, x0:x1]
        assert crop.any(axis=1).all() and crop.any(axis=0).all()
        cover[y0:y1, x0:x1] += 1
    assert cover.max(initial=0) <= 1
    assert np.all(cover[mask > 0] == 1)


def test_two_defects_side_by_side_are_labelled_in_two_boxes():
    mask = np.zeros((100, 200), np.uint8)
    mask[10:40, 20:30] = 1
    mask[30:60, 150:170] = 1   # shares rows 30-39 with the first
    assert sorted(postprocess._boxes(mask)) == [(10, 40, 20, 30), (30, 60, 150, 170)]
