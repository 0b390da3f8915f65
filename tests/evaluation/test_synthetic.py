import numpy as np
import pytest

from vi_stream.evaluation import synthetic


def test_same_seed_same_image_and_mask_different_seed_differs():
    a = synthetic.module_image((256, 320), seed=7, defects=("dust", "scratch"))
    b = synthetic.module_image((256, 320), seed=7, defects=("dust", "scratch"))
    c = synthetic.module_image((256, 320), seed=8, defects=("dust", "scratch"))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("kind,dtype,ndim", [("grey8", np.uint8, 2), ("grey16", np.uint16, 2), ("rgb", np.uint8, 3)])
def test_kinds(kind, dtype, ndim):
    s = synthetic.module_image((200, 300), seed=1, kind=kind)
    assert s.image.dtype == dtype and s.image.ndim == ndim and s.image.shape[:2] == (200, 300)
    if kind == "grey16":
        assert 1000 < s.image.max() <= 4095  # 12 significant bits
    assert s.image.std() > 5  # there is structure, not a flat field


@pytest.mark.parametrize("kind", synthetic.FAMILIES)
def test_every_defect_has_an_exact_mask_that_changes_the_pixels_under_it(kind):
    good = synthetic.module_image((384, 384), seed=3)
    bad = synthetic.module_image((384, 384), seed=3, defects=(kind,))
    assert bad.mask.dtype == np.uint8 and set(np.unique(bad.mask)) == {0, 1}
    assert bad.defects and bad.defects[0]["type"] == kind and bad.defects[0]["area"] == int(bad.mask.sum())
    x, y, w, h = bad.defects[0]["bbox"]
    assert bad.mask[y:y + h, x:x + w].sum() == bad.mask.sum()
    # Same seed, same scene: pixels under the mask changed a lot, the rest only by noise.
    diff = np.abs(bad.image.astype(int) - good.image.astype(int))
    inside = diff[bad.mask == 1].mean()
    # noise is drawn after the defect consumed random numbers, so compare with a noise-level bound
    assert inside > 12, (kind, inside)
    assert not good.mask.any()


def test_scene_has_bright_pads_on_darker_substrate():
    s = synthetic.module_image((512, 512), seed=0)
    img = s.image.astype(float)
    assert np.percentile(img, 95) - np.percentile(img, 20) > 60


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown defect"):
        synthetic.module_image((256, 256), defects=("crack",))
    with pytest.raises(ValueError, match="unknown kind"):
        synthetic.module_image((256, 256), kind="grey32")
    with pytest.raises(ValueError, match="at least 128"):
        synthetic.module_image((64, 256))


def test_dataset_names_and_counts():
    names = [n for n, _ in synthetic.dataset(2, 1, (160, 160))]
    assert names[:2] == ["good_000", "good_001"]
    assert len(names) == 2 + len(synthetic.DEFECT_TYPES)


def test_at_least_twelve_families_each_drawn_in_every_kind_and_on_varied_modules():
    assert len(synthetic.FAMILIES) >= 12 and len(set(synthetic.FAMILIES)) == len(synthetic.FAMILIES)
    for i, fam in enumerate(synthetic.FAMILIES):
        for kind in synthetic.KINDS:
            s = synthetic.module_image((256, 256), seed=60 + i, defects=(fam,), kind=kind,
                                       variation=synthetic.Variation.draw(60 + i))
            assert s.mask.any() and s.defects[0]["type"] == fam, (fam, kind)


def test_classic_modules_are_unchanged_by_the_new_families():
    """The classic generator's images for a seed are pinned: the benchmarks' sets stay the same."""
    import hashlib
    s = synthetic.module_image((256, 320), seed=5, defects=("scratch", "dust"))
    assert hashlib.sha256(s.image.tobytes()).hexdigest()[:16] == "afcb4635d4243dfb"
    assert synthetic.module_image((256, 320), seed=5, variation=synthetic.Variation.classic()).image.tobytes() == \
        synthetic.module_image((256, 320), seed=5).image.tobytes()


@pytest.mark.parametrize("family", ["hairline", "oxidation", "dust", "stain"])
def test_a_contrast_ladder_draws_the_same_defect_fainter(family):
    """The same seed at decreasing contrast: the same mask, and the change under it shrinks with the contrast."""
    good = synthetic.module_image((320, 320), seed=11, defects=(family,), contrast=1e-6)
    diffs, masks = [], []
    for c in (1.0, 0.5, 0.25, 0.1):
        s = synthetic.module_image((320, 320), seed=11, defects=(family,), contrast=c)
        masks.append(s.mask)
        diffs.append(np.abs(s.image.astype(float) - good.image.astype(float))[s.mask == 1].mean())
        assert s.defects[0]["contrast"] == c
    assert all(np.array_equal(m, masks[0]) for m in masks)
    assert diffs == sorted(diffs, reverse=True) and diffs[-1] < 0.2 * diffs[0] + 1, diffs
    with pytest.raises(ValueError, match="contrast"):
        synthetic.module_image((256, 256), seed=1, defects=(family,), contrast=0.0)
    with pytest.raises(ValueError, match="contrast"):
        synthetic.module_image((256, 256), seed=1, defects=(family, family), contrast=[0.5])


def test_defects_come_brighter_and_darker_than_their_surroundings():
    signs = set()
    for seed in range(12):
        base = synthetic.module_image((256, 256), seed=seed, defects=("hairline",), contrast=1e-6)
        s = synthetic.module_image((256, 256), seed=seed, defects=("hairline",))
        signs.add(np.sign(float(s.image[s.mask == 1].astype(float).mean() - base.image[s.mask == 1].mean())))
    assert signs == {-1.0, 1.0}


def test_varied_modules_differ_in_layout_and_optics():
    a, b = synthetic.Variation.draw(1), synthetic.Variation.draw(2)
    assert a != b and synthetic.Variation.draw(1) == a
    rows = {synthetic.Variation.draw(i).rows for i in range(20)}
    assert rows >= {2, 3, 4}
    assert synthetic.Variation.classic() == synthetic.Variation()
