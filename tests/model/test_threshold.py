"""The image threshold from good images' scores (out of fold or held out) and a false-alarm target."""
import math

import numpy as np
import pytest

from vi_stream.errors import ModelError
from vi_stream.model.calibration import calibrated_threshold, gumbel_k


@pytest.mark.parametrize("n, one_in", [(4, 20), (8, 20), (8, 100), (16, 50), (40, 20), (150, 20)])
def test_threshold_keeps_its_false_alarm_target_on_average(n, one_in):
    """Scores of good images drawn from an extreme-value law of arbitrary location and scale:
    the share of new good images above the threshold, averaged over many calibrations, is the
    target (the plain plug-in quantile would exceed it by far for small n)."""
    rng = np.random.default_rng(123)
    loc, scale = 20.0, 1.7
    rates, plugin = [], []
    for _ in range(3000):
        s = rng.gumbel(loc, scale, size=n)
        t = calibrated_threshold(s, one_in, confidence=0.0)
        rates.append(-math.expm1(-math.exp(-(t - loc) / scale)))
        b = s.std(ddof=1) * math.sqrt(6) / math.pi
        q = s.mean() - 0.5772 * b - b * math.log(-math.log(1 - 1 / one_in))
        plugin.append(-math.expm1(-math.exp(-(q - loc) / scale)))
    # the 2% floor can only lower the rate; from one_in scores on it is their empirical quantile at the
    # target, not their highest (which would set the threshold for about a third of the target at 40)
    assert 0.6 / one_in < np.mean(rates) <= 1.1 / one_in
    if n <= 16:                                   # from many scores the plug-in is close too
        assert np.mean(plugin) > 1.3 / one_in


@pytest.mark.parametrize("n, confidence", [(8, 0.8), (8, 0.9), (40, 0.9), (150, 0.9), (40, 0.95)])
def test_with_a_confidence_that_share_of_calibrations_keeps_the_target(n, confidence):
    """The share of calibrations whose threshold lets through at most one good image in 20 is the
    confidence asked (the floor can only raise it), well above the share the rule on average keeps;
    the rate is then below the target on average."""
    rng = np.random.default_rng(7)
    loc, scale, one_in = 20.0, 1.7, 20
    kept, kept_on_average, rates = [], [], []
    for _ in range(3000):
        s = rng.gumbel(loc, scale, size=n)
        rate = [-math.expm1(-math.exp(-(calibrated_threshold(s, one_in, confidence=c) - loc) / scale)) for c in (confidence, 0.0)]
        kept.append(rate[0] <= 1 / one_in)
        kept_on_average.append(rate[1] <= 1 / one_in)
        rates.append(rate[0])
    assert confidence - 0.025 <= np.mean(kept) <= confidence + (0.06 if n < one_in else 0.025)
    assert np.mean(rates) < 1 / one_in
    if n >= 40:                                   # on average, 62% at 40 scores and 76% at 150 (with the floor)
        assert np.mean(kept) > np.mean(kept_on_average) + 0.1


def test_a_large_k_from_few_scores_is_found_and_an_impossible_one_refused():
    """From 2 scores at one in 20 with confidence 0.99, k is about 238 (the bracket grows to hold it; it had
    stopped at 60 and returned 60); a k beyond MAX_K (the rule on average from 2 scores at one in 10,000
    needs about 6,700) is refused in words."""
    k = gumbel_k(2, 20, 0.99)
    assert 200 < k < 300
    assert 600 < gumbel_k(2, 1000, 0.0) < 750
    with pytest.raises(ModelError, match="^2 calibration scores cannot set a threshold for one false alarm in "
                                         "10000: give more good images"):
        gumbel_k(2, 10_000, 0.0)


def test_k_grows_with_the_target_and_shrinks_with_more_images():
    assert gumbel_k(8, 20) < gumbel_k(8, 50) < gumbel_k(8, 100)
    assert gumbel_k(20, 20) < gumbel_k(8, 20) < gumbel_k(4, 20)
    assert gumbel_k(8, 20) == gumbel_k(8, 20)  # a fixed seed: the same threshold every fit
    assert gumbel_k(40, 20) < gumbel_k(40, 20, 0.8) < gumbel_k(40, 20, 0.9) < gumbel_k(40, 20, 0.95)


def test_identical_or_too_few_calibration_scores():
    assert calibrated_threshold([5.0, 5.0, 5.0], 20, confidence=0.9) == pytest.approx(5.1)
    assert calibrated_threshold([5.0] * 40, 20, confidence=0.9) == pytest.approx(5.1)      # no spread: the floor, many or few
    many = np.r_[np.full(38, 5.0), 9.0, 9.0]                               # the quantile, not the highest: 5%
    assert calibrated_threshold(many, 20, confidence=0.0) >= 1.02 * np.quantile(many, 0.95) and np.quantile(many, 0.95) < 9.0
    with pytest.raises(ModelError, match="at least two"):
        calibrated_threshold([5.0], 20, confidence=0.9)
    with pytest.raises(ModelError, match="finite"):
        calibrated_threshold([5.0, float("nan")], 20, confidence=0.9)
