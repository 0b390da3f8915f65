"""bench/false_alarms.py: good images over the threshold per setting, over several fits."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import common
import false_alarms
import report

sys.path.pop(0)


def test_wilson_interval_against_values_worked_by_hand():
    lo, hi = false_alarms.wilson(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = false_alarms.wilson(0, 10)            # none seen: the interval still reaches 0.28
    assert lo == 0.0 and round(hi, 4) == 0.2775
    assert false_alarms.wilson(0, 0) == (0.0, 1.0)


def test_a_module_other_than_classic_or_a_tuning_line_is_refused_in_one_line():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "false_alarms.py"), "--module", "line:9101"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        "false_alarms.py: error: --module is 'classic' or 'line:L' with L one of 7, 13, 16, got 'line:9101'")


def test_a_run_counts_every_fresh_good_image_of_every_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    false_alarms.main(["--size", "256", "--good", "10", "--fits", "2", "--test", "3", "--name", "fa",
                       "--variant", "strict", "false_alarm_one_in=1000"])
    d = json.loads((tmp_path / "fa.json").read_text())
    assert list(d["variants"]) == ["defaults", "strict"] and d["target"] == 0.05
    for v in d["variants"].values():
        assert len(v["per_fit"]) == 2 and all(0 <= k <= 3 for k in v["per_fit"])
        assert v["false_alarms"] == sum(v["per_fit"]) and v["images"] == 6
        assert v["rate"] == round(v["false_alarms"] / 6, 4) and v["rate_95"][0] <= v["rate"] <= v["rate_95"][1]
        # the rule read off the same fits: at the variant's own confidence it gives the fits' own thresholds
        # and counts; a higher confidence never sets a lower threshold (the rule on average is not one of
        # them: from 10 scores it asks more than a confidence of 0.8)
        own = v["by_confidence"][f"{v['config']['false_alarm_confidence']:g}"]
        assert own["per_fit"] == v["per_fit"] and all(abs(r - 1) < 1e-4 for r in own["threshold_vs_fit"])
        steps = [v["by_confidence"][f"{c:g}"]["threshold_vs_fit"] for c in false_alarms.CONFIDENCES if c]
        assert all(a <= b for lo, hi in zip(steps, steps[1:]) for a, b in zip(lo, hi)), steps
        assert all(len(f["calibration_scores"]) == 10 and len(f["test_scores"]) == 3 for f in v["fits"])
    strict = d["variants"]["strict"]
    assert strict["overrides"] == ["false_alarm_one_in=1000"] and strict["config"]["false_alarm_one_in"] == 1000
    # a stricter target cannot flag more of the same images than the defaults' threshold over the same fits
    assert all(s <= t for s, t in zip(strict["highest_over_threshold"], d["variants"]["defaults"]["highest_over_threshold"]))


@pytest.mark.parametrize("args, message", [
    (["--lines", "7-9"], "--lines is FIRST-LAST within 100-199 (lines drawn for this study alone), got '7-9'"),
    (["--lines", "150-120"], "--lines is FIRST-LAST within 100-199 (lines drawn for this study alone), got '150-120'"),
    (["--lines", "100-101", "--fits", "2"], "--lines fits once on each line it names: give it or --module and "
                                            "--fits, not both")])
def test_study_lines_outside_their_range_or_beside_module_are_refused_in_one_line(args, message):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "false_alarms.py"), *args],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == f"false_alarms.py: error: {message}", p.stderr


def test_a_study_of_lines_fits_once_on_each_line_and_reports_it_beside_its_properties(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    false_alarms.main(["--lines", "100-101", "--size", "256", "--good", "10", "--test", "3", "--defaults-only",
                       "--name", "false_alarms-lines"])
    d = json.loads((tmp_path / "false_alarms-lines.json").read_text())
    assert d["module"] == "lines:100-101" and d["fits"] == 2 and list(d["variants"]) == ["defaults"]
    assert d["command"] == ("python bench/false_alarms.py --lines 100-101 --size 256 --good 10 --test 3 "
                            "--defaults-only --name false_alarms-lines")
    fits = d["variants"]["defaults"]["fits"]
    assert [f["line"] for f in fits] == [100, 101]
    for f, line in zip(fits, (100, 101)):   # each fit's images are of its own line, and say which properties
        assert f["variation"]["pitch"] == round(false_alarms.synthetic.Variation.draw(line).pitch, 4)
        assert len(f["test_scores"]) == 3 and len(f["calibration_scores"]) == 10
    assert fits[0]["test_scores"] != fits[1]["test_scores"]
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    text = report.false_alarms()
    assert "The study lines 100-101, one fit on each" in text and "Line by line (defaults)" in text
    table = text[text.index("Line by line"):]
    assert "| 100 |" in table and "| 101 |" in table and "Spearman's rho over the 2 lines" in table


def test_spearman_ranks_ties_as_scipy_does():
    assert report._spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert report._spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert report._spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)   # scipy.stats.spearmanr's
    assert report._spearman([1, 1], [1, 2]) == 0.0                              # one side constant


def test_too_few_good_images_to_hold_any_out_is_refused():
    with pytest.raises(SystemExit):
        false_alarms.main(["--good", "4"])
