"""bench/structural.py's record: peers already measured on the same set are carried into a new record
(their fits take 10-30 minutes), never from another set, and never twice under one label."""
from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import structural

sys.path.pop(0)

SET = {"line": 7, "size": 768, "per_family": 16, "seed": 1}
FAMILIES = ["scratch", "trace_open"]


def record(set_desc, peers, date="2026-12-01", families=FAMILIES):
    return {"machine": {"date": date}, "set": set_desc, "tuning_families": families,
            "peers": [{"label": p, "image_auroc": 0.9} for p in peers]}


def test_peers_not_run_again_are_carried_with_the_date_of_the_run_that_made_them():
    previous = record(SET, ["pc-a", "pc-b"])
    previous["peers"][1]["carried_from"] = "2026-11-20"     # itself carried into the previous record
    new = {"set": dict(SET), "tuning_families": list(FAMILIES), "peers": [{"label": "pc-a", "image_auroc": 0.8}]}
    carried = structural.carried_peers(previous, new)
    assert [(p["label"], p["carried_from"]) for p in carried] == [("pc-b", "2026-11-20")]
    new.pop("peers")                                          # a run of ours only keeps every peer
    assert [(p["label"], p["carried_from"]) for p in structural.carried_peers(record(SET, ["pc-a"]), new)] == \
        [("pc-a", "2026-12-01")]


def test_peers_of_another_set_or_other_families_are_not_carried():
    new = {"set": {**SET, "per_family": 30}, "tuning_families": list(FAMILIES)}
    assert structural.carried_peers(record(SET, ["pc-a"]), new) == []
    new = {"set": dict(SET), "tuning_families": ["scratch"]}
    assert structural.carried_peers(record(SET, ["pc-a"]), new) == []
    assert structural.carried_peers({}, {"set": dict(SET), "tuning_families": list(FAMILIES)}) == []
    # the same description, other images (a changed generator): the digests differ
    previous = {**record(SET, ["pc-a"]), "set_digest": "aa"}
    assert structural.carried_peers(previous, {"set": dict(SET), "tuning_families": list(FAMILIES),
                                               "set_digest": "bb"}) == []
    assert len(structural.carried_peers(previous, {"set": dict(SET), "tuning_families": list(FAMILIES),
                                                   "set_digest": "aa"})) == 1


def test_the_set_digest_follows_the_images(tmp_path):
    np.save(tmp_path / "good.npy", np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "set.json").write_text("{}")
    first = structural.set_digest(str(tmp_path))
    assert structural.set_digest(str(tmp_path)) == first
    np.save(tmp_path / "good.npy", np.ones((2, 4, 4), np.uint8))
    assert structural.set_digest(str(tmp_path)) != first


def test_a_line_other_than_the_tuning_lines_is_refused_before_anything_is_drawn(tmp_path):
    import subprocess
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "structural.py"), "--line", "9203",
                        "--set", str(tmp_path / "set"), "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--line: invalid choice: 9203 (choose from 7, 13, 16)" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "set") and not os.path.exists(tmp_path / "work")


def _variant(label, structural_mean, others_mean, false_alarms, overrides=(), scores=None):
    v = {"label": label, "overrides": list(overrides), "structural_mean": {"image_auroc": structural_mean},
         "others_mean": {"image_auroc": others_mean}, "false_alarms_per_good_image": false_alarms}
    return v if scores is None else {**v, "scores_over_threshold": scores}


def test_the_report_sets_each_variant_beside_itself_on_every_tuning_line(tmp_path, monkeypatch):
    import json
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import report
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    # each image's score over its line's threshold; pooled: good 0.5 0.9 0.7 1.1 against trace_open (structural)
    # 1.2 0.6 0.95 and scratch 2.0 1.5 3.0: 20 of 24 pairs ranked right, 8 of 12 for trace_open alone
    scores = {7: {"good": [0.5, 0.9], "trace_open": [1.2], "scratch": [2.0]},
              13: {"good": [0.7], "trace_open": [0.6], "scratch": [1.5]},
              16: {"good": [1.1], "trace_open": [0.95], "scratch": [3.0]}}
    runs = {"structural": (7, [_variant("default", 0.7, 0.99, 0.0, scores=scores[7]),
                               _variant("fast", 0.8, 0.97, 0.05, ["tile=416"], scores=scores[7])]),
            "structural-line13": (13, [_variant("default", 0.6, 0.95, 0.1, scores=scores[13])]),
            "structural-line16": (16, [_variant("default", 0.5, 0.9, 0.05, scores=scores[16]),
                                       _variant("fast", 0.6, 0.9, 0.0, scores=scores[16])])}
    for name, (line, variants) in runs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"set": {"line": line}, "variants": variants,
                                                           "structural_families": ["trace_open"]}))
    assert report._structural_names() == ["structural", "structural-line13", "structural-line16"]
    rows = {r.split(" | ")[0].strip("| "): r for r in report.structural_lines().splitlines() if r.startswith("| ")}
    assert "| line 7 | line 13 | line 16 | pooled image AUROC | pooled, structural |" in rows["variant"]
    assert rows["default"] == ("| default | (defaults) | 0.7 / 0.99 / 0.0 | 0.6 / 0.95 / 0.1 | 0.5 / 0.9 / 0.05 "
                               "| 0.8333 | 0.6667 | 0.667 | 0.25 |")
    assert rows["fast"] == "| fast | tile=416 | 0.8 / 0.97 / 0.05 | – | 0.6 / 0.9 / 0.0 | (not on every line) |  |  |  |"
    os.remove(tmp_path / "structural-line13.json")
    os.remove(tmp_path / "structural-line16.json")
    assert report.structural_lines() == ""            # one line: its own section says it all


def test_each_image_is_recorded_over_its_models_threshold(tmp_path):
    for split, s in (("good", [1.0, 3.0]), ("trace_open", [6.0])):
        np.savez(tmp_path / f"{split}.npz", scores=np.array(s), maps=np.zeros((len(s), 2, 2)))
    assert structural.scores_over_threshold(str(tmp_path), ["trace_open"], 2.0) == \
        {"good": [0.5, 1.5], "trace_open": [3.0]}
