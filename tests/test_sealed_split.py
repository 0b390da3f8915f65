"""The sealed split (bench/sealed.py, issue 28): drawn only by a --final run, recorded with its commit,
refused a second time on the same settings unless the run says why, and never drawn by tuning."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from vi_stream.evaluation import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import generalise
import genset
import sealed

sys.path.pop(0)

TINY = ["--size", "192", "--train", "4", "--good", "3", "--per-family", "2", "--allow-dirty",
        "--config", "tile=128", "overlap=32", "bank_size=2000", "cells=16", "calibration_every=2"]


def test_nothing_is_drawn_without_final(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(sealed.synthetic, "module_image", lambda *a, **k: drawn.append(a))
    with pytest.raises(SystemExit):
        sealed.main(["--results", str(tmp_path)])
    assert drawn == [] and not os.listdir(tmp_path)


def test_a_final_run_records_its_commit_and_refuses_the_same_settings_twice(tmp_path):
    assert sealed.main(["--final", "--results", str(tmp_path), *TINY]) == 0
    d = json.loads((tmp_path / "sealed.json").read_text())
    ledger = json.loads((tmp_path / "sealed" / "ledger.json").read_text())
    scores = json.loads((tmp_path / "sealed" / "scores.json").read_text())["images"]
    assert len(ledger) == 1 and len(ledger[0]["commit"]) == 40 and d["run"] == ledger[0]
    n_lines, n_fam = len(sealed.SEALED_LINES), len(sealed.SEALED_FAMILIES)
    assert len(scores) == n_lines * (3 + 2 * n_fam)
    assert {s["seed"] for s in scores} <= sealed.sealed_seeds(4, 3, 2)
    o = d["overall"]
    assert o["good_images"] == 3 * n_lines and o["defective_images"] == 2 * n_lines * n_fam
    for row in [o, *d["per_family"].values()]:
        lo, hi = row["image_auroc_95"]
        assert 0 <= lo <= row["image_auroc"] <= hi <= 1
    assert set(d["per_family"]) == set(sealed.SEALED_FAMILIES)
    # the same settings again: refused before anything is drawn, and the ledger is unchanged
    with pytest.raises(SystemExit, match="already run on these settings"):
        sealed.main(["--final", "--results", str(tmp_path), *TINY])
    assert json.loads((tmp_path / "sealed" / "ledger.json").read_text()) == ledger


def test_again_runs_and_records_why(tmp_path, monkeypatch):
    (tmp_path / "sealed").mkdir()
    config = generalise._override(sealed.ModelConfig(), TINY[TINY.index("--config") + 1:])
    digest = sealed.settings_digest(config, {"size": 192, "train": 4, "good": 3, "per_family": 2})
    (tmp_path / "sealed" / "ledger.json").write_text(json.dumps([{"settings_digest": digest, "commit": "x",
                                                                   "date": "earlier"}]))
    monkeypatch.setattr(sealed, "run", lambda *a: ({}, {"overall": {}, "per_family": {}}, []))
    assert sealed.main(["--final", "--again", "a reviewer asked for a rerun", "--results", str(tmp_path), *TINY]) == 0
    ledger = json.loads((tmp_path / "sealed" / "ledger.json").read_text())
    assert len(ledger) == 2 and ledger[1]["again"] == "a reviewer asked for a rerun"


def test_building_the_tuning_sets_never_draws_a_sealed_line_or_seed(tmp_path, monkeypatch):
    drawn = []
    real = synthetic.module_image

    def spy(shape=(768, 768), seed=0, defects=(), kind="grey8", side=None, contrast=None, variation=None):
        drawn.append((seed, variation, tuple(defects)))
        return real(shape, seed, defects, kind, side, contrast, variation)

    monkeypatch.setattr(synthetic, "module_image", spy)
    genset.build(str(tmp_path / "all"), size=128, train=2, good=2, per_family=2, ladder=1)          # generalise's
    genset.build(str(tmp_path / "tuning"), size=128, train=2, good=2, per_family=2, ladder=1,
                 families=generalise.TUNING)                                                      # structural's
    assert len(drawn) > 50
    seeds = {s for s, _v, _d in drawn}
    assert not seeds & sealed.sealed_seeds(40, 34, 10)
    assert min(seeds) >= 0 and max(seeds) < sealed.SEALED_BASE
    lines = {synthetic.Variation.draw(line) for line in sealed.SEALED_LINES}
    assert not {v for _s, v, _d in drawn} & lines
    assert not {f for _s, _v, d in drawn for f in d} & set(synthetic.RESERVED)
    assert set(synthetic.RESERVED) <= set(sealed.SEALED_FAMILIES) and not set(synthetic.RESERVED) & set(generalise.TUNING)
    # and no tuning script imports the sealed split
    for name in ("genset.py", "generalise.py", "structural.py", "quality.py", "dims.py"):
        with open(os.path.join(ROOT, "bench", name)) as f:
            src = f.read()
        assert "import sealed" not in src and "SEALED" not in src, name


def test_the_bootstrap_interval_narrows_with_more_images():
    rng = np.random.default_rng(1)
    small = sealed.bootstrap_auroc(rng.normal(0, 1, 10), rng.normal(1, 1, 10), reps=500)
    large = sealed.bootstrap_auroc(rng.normal(0, 1, 200), rng.normal(1, 1, 200), reps=500)
    assert small[1] - small[0] > large[1] - large[0] > 0
