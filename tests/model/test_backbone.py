import cv2
import numpy as np
import pytest
import torch

from vi_stream.errors import ModelError
from vi_stream.model.backbone import (
    INPUT_MEAN,
    INPUT_STD,
    FeatureExtractor,
    block_table,
    load_classifier,
)


def _imagenet_input(img: np.ndarray) -> torch.Tensor:
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return (torch.from_numpy(x).permute(2, 0, 1)[None] - INPUT_MEAN) / INPUT_STD


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.mark.parametrize("name,classes", [
    ("chelsea", {281, 282, 283, 284, 285}),  # a cat: tabby / tiger / Persian / Siamese / Egyptian
    ("coffee", {967, 968, 504}),              # espresso / cup / coffee mug
])
def test_pretrained_weights_classify_natural_photographs(classifier, name, classes):
    import skimage.data
    with torch.no_grad():
        p = classifier(_imagenet_input(getattr(skimage.data, name)())).softmax(1)[0]
    assert int(p.argmax()) in classes
    assert float(p[list(classes)].sum()) > 0.5


def test_weights_load_strictly_and_every_parameter_is_used(classifier):
    n_params = sum(1 for _ in classifier.state_dict())
    assert n_params == 296  # every key of the shipped state dict, nothing left at init


def test_folded_grey_trunk_equals_the_plain_network_on_replicated_grey(classifier):
    fe = FeatureExtractor([4], in_channels=1)
    x = torch.rand(2, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = fe(x)[0]
        y = (x.repeat(1, 3, 1, 1) - INPUT_MEAN) / INPUT_STD
        y = classifier.act(classifier._bn0(classifier._conv_stem(y)))
        for b in classifier._blocks[:5]:
            y = b(y)
    assert ours.shape == y.shape == (2, 40, 8, 12)
    # float32 rounding through five blocks, in another order of the sums: about 3e-6 of the activations' range
    # (1e-4 of 35: a fixed 1e-4 failed once in CI on an unseeded input), where a wrong fold is off by whole units
    assert float((ours - y).abs().max()) <= 1e-5 * float(y.abs().max())


def test_block_table_strides():
    t = block_table()
    assert len(t) == 16 and (t[2].stride, t[4].stride, t[7].stride) == (4, 8, 16)
    assert (t[2].channels, t[4].channels, t[7].channels) == (24, 40, 80)


def test_bad_blocks_and_channels_are_errors():
    with pytest.raises(ModelError):
        FeatureExtractor([16])
    with pytest.raises(ModelError):
        FeatureExtractor([2], in_channels=2)
