"""The drift watch (issue 18): the statistics, the states, a brightening stream, the daemon's reports."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from vi_stream.evaluation import synthetic
from vi_stream.model import AnomalyModel
from vi_stream.registry.drift import (
    DriftWatch,
    judge,
    ks_critical,
    ks_statistic,
    wasserstein,
)

from ..helpers import SMALL_CONFIG

SHAPE = (384, 384)     # smaller than the session's images (512): the test fits and scores 115 images


def test_ks_and_wasserstein_against_values_worked_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert ks_statistic(a, a) == 0.0 and wasserstein(a, a) == 0.0
    assert ks_statistic(a, a + 10) == 1.0
    assert wasserstein(a, a + 2.5) == pytest.approx(2.5)                  # a shift moves every unit of mass
    assert ks_statistic(a, np.array([1.0, 2.0, 5.0, 6.0])) == pytest.approx(0.5)
    assert wasserstein(np.array([0.0, 1.0]), np.array([0.0, 3.0])) == pytest.approx(1.0)   # half the mass by 2
    assert ks_critical(50, 16, 0.01) == pytest.approx(1.6276 * np.sqrt(66 / 800), rel=1e-3)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=400), rng.normal(size=300)
    assert ks_statistic(x, y) < ks_critical(400, 300, 0.01)               # one distribution: no alarm


def test_states_follow_the_documented_limits():
    ref = np.linspace(1.0, 2.0, 16)
    assert judge(np.linspace(1.0, 2.0, 50), ref, 3.0, 0)["state"] == "green"
    assert judge(np.linspace(1.0, 2.0, 50), ref, 3.0, 5)["state"] == "yellow"      # 9% rejected
    assert judge(np.linspace(1.0, 2.0, 50), ref, 3.0, 20)["state"] == "red"        # 29% rejected
    assert judge(np.linspace(1.5, 2.5, 50), ref, 3.0, 0)["state"] == "yellow"      # half a range higher
    far = judge(np.linspace(4.0, 5.0, 50), ref, 3.0, 0)
    assert far["state"] == "red" and far["anomalous_fraction"] == 1.0 and far["ks"] == 1.0


def _result(score: float):
    return SimpleNamespace(score=score)


@pytest.fixture(scope="module")
def model() -> AnomalyModel:
    """Fitted on 30 good images, as a model fitted for a line would be: its reference holds their 30 scores
    out of fold. From the session's 15 images each fold's bank holds 12 of them, where the model's holds
    15: the reference sits higher than the scores in use by more than a test of where yellow starts allows."""
    return AnomalyModel.fit([synthetic.module_image(SHAPE, seed=1000 + i).image for i in range(30)],
                            SMALL_CONFIG)


def test_a_slowly_brightening_stream_turns_yellow_then_red_and_a_model_fitted_on_it_is_green(model, caplog):
    """Real scores from the fitted model: images brighten by 2 grey levels per frame."""
    assert len(model.meta["calibration_scores"]) == 30
    watch = DriftWatch(model.meta["calibration_scores"], model.threshold, chunk=10)
    states = []
    with caplog.at_level(logging.INFO, logger="vi_stream.drift"):
        for i in range(60):
            img = synthetic.module_image(SHAPE, seed=5000 + i % 15).image.astype(np.int16)
            bright = np.clip(img + 2 * i, 0, 255).astype(np.uint8)
            watch.result(_result(model.score(bright).score))
            if len(watch.history) > len(states):
                states.append(watch.state)
    assert states[0] == "green" and "yellow" in states and states[-1] == "red"
    assert states.index("yellow") < states.index("red")
    changes = [r.getMessage() for r in caplog.records if r.name == "vi_stream.drift"]
    assert len(changes) == len([1 for a, b in zip(["green"] + states, states) if a != b])   # one line per change
    # A model fitted on the bright images (the new normal) becomes the reference: green again.
    bright_good = [np.clip(synthetic.module_image(SHAPE, seed=1000 + i).image.astype(np.int16) + 118, 0, 255)
                   .astype(np.uint8) for i in range(15)]
    refit = AnomalyModel.fit(bright_good, SMALL_CONFIG)
    watch.set_reference(refit.meta["calibration_scores"], refit.threshold, "pads@1.1")
    for i in range(10):
        img = synthetic.module_image(SHAPE, seed=5000 + i).image.astype(np.int16)
        watch.result(_result(refit.score(np.clip(img + 118, 0, 255).astype(np.uint8)).score))
    assert watch.state == "green" and watch.status()["last"]["model_version"] == "pads@1.1"


def test_rejects_count_and_a_reference_too_small_never_judges():
    watch = DriftWatch([1.0], 2.0, chunk=10)
    for _ in range(30):
        watch.result(_result(9.0))
    assert watch.state == "green" and not watch.history       # one reference score cannot be compared
    watch = DriftWatch(list(np.linspace(1, 2, 16)), 3.0, chunk=10)
    for i in range(10):
        watch.rejected("bad_message")
        watch.result(_result(1.0 + i / 10))
    assert watch.state == "red" and watch.history[-1]["rejected_fraction"] == 0.5
