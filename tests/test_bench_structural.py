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
