"""bench/threshold_laws.py: threshold laws set again on the recorded fits' scores."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
SCRIPT = os.path.join(ROOT, "bench", "threshold_laws.py")
sys.path.insert(0, os.path.join(ROOT, "bench"))
import threshold_laws

sys.path.pop(0)


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def _copy_records(dest) -> None:
    for name in (threshold_laws.STUDY, *threshold_laws.FRESH, *threshold_laws.TUNING):
        shutil.copy(os.path.join(RESULTS, name + ".json"), dest / (name + ".json"))


def test_the_model_rule_gives_the_recorded_false_alarms_and_every_law_is_reported(tmp_path):
    _copy_records(tmp_path)
    p = _run("--results", str(tmp_path))
    assert p.returncode == 0, p.stderr
    d = json.loads((tmp_path / "threshold_laws.json").read_text())
    assert d["reproduced"] < 1e-5
    assert [(r["law"], r["confidence"]) for r in d["laws"]] == [
        (law, c) for law in threshold_laws.LAWS for c in threshold_laws.CONFIDENCES]
    study = json.loads((tmp_path / (threshold_laws.STUDY + ".json")).read_text())["variants"]["defaults"]
    model = next(r for r in d["laws"] if r["law"] == "gumbel" and r["confidence"] == study["config"]["false_alarm_confidence"])
    assert model["study"] == {"false_alarms": study["false_alarms"], "images": study["images"]}
    for key, names in (("study", [threshold_laws.STUDY]), ("fresh", threshold_laws.FRESH)):
        recorded = [json.loads((tmp_path / (n + ".json")).read_text())["variants"]["defaults"]["by_confidence"]
                    for n in names]      # bench/false_alarms.py's own count of the same fits at each confidence
        for r in d["laws"]:
            if r["law"] == "gumbel" and str(r["confidence"]) in recorded[0]:
                assert r[key]["false_alarms"] == sum(b[str(r["confidence"])]["false_alarms"] for b in recorded)
    for law in threshold_laws.LAWS:      # a higher confidence never lowers a threshold: no more false alarms
        fa = [r["study"]["false_alarms"] + r["fresh"]["false_alarms"] for r in d["laws"] if r["law"] == law]
        assert fa == sorted(fa, reverse=True)


def test_records_made_with_another_rule_are_refused_and_a_missing_one_is_named(tmp_path):
    _copy_records(tmp_path)
    path = tmp_path / (threshold_laws.FRESH[0] + ".json")
    d = json.loads(path.read_text())
    d["variants"]["defaults"]["fits"][0]["threshold"] *= 1.1
    path.write_text(json.dumps(d))
    p = _run("--results", str(tmp_path))
    assert p.returncode == 1 and "off the recorded ones" in p.stderr
    assert not (tmp_path / "threshold_laws.json").exists()
    path.unlink()
    p = _run("--results", str(tmp_path), "--no-write")
    assert p.returncode == 1 and f"{path} is missing" in p.stderr


def test_the_gev_fit_recovers_a_known_law_and_its_threshold_keeps_the_target():
    loc, scale, k = 20.0, 1.5, -0.2            # a heavy upper tail
    rng = np.random.default_rng(5)
    x = threshold_laws.gev_quantile(loc, scale, k, rng.random(200_000))
    fl, fs, fk = threshold_laws.gev_fit(x[None, :])
    assert abs(fl[0] - loc) < 0.02 and abs(fs[0] - scale) < 0.02 and abs(fk[0] - k) < 0.01
    p95 = threshold_laws.gev_quantile(loc, scale, k, 0.95)
    assert math.isclose(threshold_laws.gev_exceedance(p95, loc, scale, k), 0.05, rel_tol=1e-9)
    # from 40 scores, thresholds at confidence 0.9 keep the share above at most 1/20 in about 9 fits of 10
    rates = [threshold_laws.gev_exceedance(threshold_laws.gev_detail(x[40 * i:40 * (i + 1)], 0.9)[0], loc, scale, k)
             for i in range(60)]
    assert 0.75 <= np.mean(np.asarray(rates) <= 0.05) <= 0.98


def test_a_confidence_no_gev_threshold_can_keep_is_said_so_not_met_silently():
    scores = [20.0, 20.5, 21.0, 40.0, 20.2]        # five scores, one far out: the shape is anyone's guess
    t, reached = threshold_laws.gev_detail(scores, 0.99)
    assert not reached and t >= threshold_laws.gev_detail(scores, 0.5)[0]
    assert threshold_laws.gev_detail(np.random.default_rng(1).gumbel(20, 1, 40), 0.9)[1]
