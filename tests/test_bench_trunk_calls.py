"""bench/trunk_calls.py: the trunk over one image's pixels cut four ways, timed in turn."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import common
import trunk_calls

sys.path.pop(0)


def test_each_way_covers_the_image_and_counts_its_pixels():
    w = trunk_calls.ways(768, 320, 64, 320, 3)
    assert w["tiles"] == [(3, 320, 320)] * 3 and w["tiles-1"] == [(1, 320, 320)] * 9
    assert w["whole"] == [(1, 768, 768)] and w["bands"] == [(1, 320, 768)] * 3      # 3 bands reach 832 rows
    w = trunk_calls.ways(2048, 320, 64, 320, 3)
    assert sum(n for n, _h, _w in w["tiles"]) == 64 and w["tiles"][-1] == (1, 320, 320)
    assert w["bands"] == [(1, 320, 1088)] * 16      # two bands side by side (2 x 1088 - 64 >= 2048), 8 down
    w = trunk_calls.ways(700, 320, 64, 320, 3)
    assert w["whole"] == [(1, 704, 704)] and w["bands"][0] == (1, 320, 704)   # sides padded to the stride of 16


def test_a_run_times_every_way_and_writes_its_record(tmp_path, monkeypatch):
    from vi_stream.model.features import PatchFeatures
    calls = []
    real = PatchFeatures.trunk_forward

    def counted(self, x):
        calls.append((id(self), tuple(x.shape)))
        return real(self, x)
    monkeypatch.setattr(PatchFeatures, "trunk_forward", counted)
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    trunk_calls.main(["--sizes", "320", "--rounds", "2", "--band", "192", "--name", "tc"])
    d = json.loads((tmp_path / "tc.json").read_text())
    assert d["command"] == "python bench/trunk_calls.py --sizes 320 --rounds 2 --band 192 --name tc"
    assert [r["way"] for r in d["rows"]] == ["tiles", "whole", "bands", "tiles-1"]
    tiles = d["rows"][0]
    assert tiles["vs_tiles"] == 1.0 and tiles["pixels_vs_image"] == 1.0 and tiles["ms"] > 0
    assert d["rows"][2]["calls"] == 2 and d["rows"][2]["pixels_vs_image"] == 1.2   # 2 bands of 192 rows: 384 / 320
    # each way has its own trunk, and every timed round sends each way's calls through it
    trunks = {}
    for t, shape in calls:
        trunks.setdefault(t, []).append(shape)
    assert sorted(map(sorted, (set(v) for v in trunks.values()))) == sorted(
        [[(1, 1, 320, 320)], [(1, 1, 320, 320)], [(1, 1, 192, 320)], [(1, 1, 320, 320)]])
    assert sorted(len(v) for v in trunks.values()) == [3 + 2, 3 + 2, 3 + 2, 3 + 2 * 2]   # 3 warm-up calls a shape


def test_a_band_that_is_not_a_multiple_of_16_above_the_overlap_is_refused():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "trunk_calls.py"), "--band", "50"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        "trunk_calls.py: error: --band is a multiple of 16 above the overlap (64), got 50")
