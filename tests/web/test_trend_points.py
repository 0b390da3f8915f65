"""Issue 27, finding 9 and the alarms, below the page: trend points kept in each store backend, the
recorder writing closed bins once (and again after a store outage), and the alarms' rules."""
from __future__ import annotations

import pytest

from vi_stream.errors import StoreUnavailable
from vi_stream.web.alarms import Alarms
from vi_stream.web.trends import TrendRecorder, Trends, merge_bins


def test_trend_points_are_kept_replaced_read_by_range_and_pruned(store):
    pts = [{"source": "CAM", "kind": "bin", "t": 100.0 + 10 * i, "frames": i} for i in range(5)]
    store.trends.put_trend_points(pts + [{"source": "OTHER", "kind": "bin", "t": 110.0, "frames": 9},
                                         {"source": "CAM", "kind": "drift", "t": 110.0, "ks": 0.1}])
    store.trends.put_trend_points([{"source": "CAM", "kind": "bin", "t": 110.0, "frames": 42}])   # a retry
    got = store.trends.trend_points("CAM", 110.0, 140.0)
    assert [(p["t"], p["kind"]) for p in got] == [(110.0, "bin"), (110.0, "drift"), (120.0, "bin"), (130.0, "bin")]
    assert got[0]["frames"] == 42
    assert len(store.trends.trend_points(None, 0, 1e12)) == 7
    assert store.trends.prune_trend_points(120.0) == 4
    assert [p["t"] for p in store.trends.trend_points("CAM", 0, 1e12)] == [120.0, 130.0, 140.0]


class _Points:
    def __init__(self):
        self.kept, self.down = [], False

    def put_trend_points(self, points):
        if self.down:
            raise StoreUnavailable("down")
        self.kept += points

    def trend_points(self, source, since, until, limit=100_000):
        return sorted((p for p in self.kept if since <= p["t"] < until), key=lambda p: p["t"])

    def prune_trend_points(self, before):
        return 0


def test_the_recorder_writes_each_closed_bin_once_and_catches_up_after_an_outage():
    now = [1000.0]
    trends, points = Trends(clock=lambda: now[0]), _Points()
    rec = TrendRecorder(points, "CAM", lambda: [{"at": 1005.0, "ks": 0.2, "state": "green"}], clock=lambda: now[0])
    trends.add(1.0, False, 0.01, "m", "pads@1.0", 2.0)
    rec.tick(trends)                       # the bin is still open: only the drift chunk goes
    assert [p["kind"] for p in points.kept] == ["drift"]
    now[0] = 1012.0
    trends.add(3.0, True, 0.01, "m", "pads@1.1", 2.0)
    points.down = True
    rec.tick(trends)
    assert len(points.kept) == 1 and rec.last_error
    points.down = False
    rec.tick(trends)
    rec.tick(trends)
    bins = [p for p in points.kept if p["kind"] == "bin"]
    assert [(b["t"], b["model_version"], b["source"]) for b in bins] == [(1000.0, "pads@1.0", "CAM")]
    read = rec.read(trends, 900.0, 1100.0)   # stored bins, then the open one from memory
    assert [b["t"] for b in read["bins"]] == [1000.0, 1010.0] and read["drift"][0]["ks"] == 0.2


def test_a_long_range_is_merged_into_wider_bins():
    bins = [{"t": 10.0 * i, "frames": 1, "rejected": 0, "score_p50": float(i), "score_p90": 1.0,
             "score_max": float(i), "anomalous_fraction": 0.0, "latency_p99_ms": 1.0} for i in range(2000)]
    merged, width = merge_bins(bins, 10.0, 0.0, 20000.0, max_points=720)
    assert width == 40.0 and len(merged) == 500
    assert merged[1]["frames"] == 4 and merged[1]["score_max"] == 7.0 and merged[1]["score_p50"] == 5.5


@pytest.mark.parametrize("store, drift, run, kinds", [
    ({"up": False, "spooled": 0, "down_reason": "gone"}, "green", 0, ["store_down"]),
    ({"up": True, "spooled": 0}, "red", 5, ["drift_red", "anomalous_run"]),
    ({"up": True, "spooled": 0}, "yellow", 4, []),
    (None, "green", 0, []),
])
def test_alarms(store, drift, run, kinds):
    assert [a["kind"] for a in Alarms().check(store, drift, run)] == kinds


def test_a_growing_spool_raises_an_alarm_and_a_draining_one_does_not():
    now = [0.0]
    alarms = Alarms(window_s=30, clock=lambda: now[0])
    assert alarms.check({"up": True, "spooled": 3}, "green", 0) == []
    now[0] = 10
    assert [a["kind"] for a in alarms.check({"up": True, "spooled": 8}, "green", 0)] == ["spool_growing"]
    now[0] = 50
    alarms.check({"up": True, "spooled": 6}, "green", 0)
    now[0] = 90
    assert alarms.check({"up": True, "spooled": 2}, "green", 0) == []
