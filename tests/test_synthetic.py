import numpy as np
import pytest

from vi_stream import synthetic


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


@pytest.mark.parametrize("kind", synthetic.DEFECT_TYPES)
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
    assert inside > 20, (kind, inside)
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
