"""The history of module sides (GET /api/history): filters, order and pages from indexes, on every backend."""
from __future__ import annotations

import pytest

from vi_stream.errors import ConfigError
from vi_stream.store import review
from vi_stream.store.local import LocalStore
from vi_stream.store.protocols import HistoryQuery
from vi_stream.web.params import history_query

from ..helpers.store import make_record


def _record(pulse: int, module: str, side: str = "left", minute: int = 0, defect: bool = True, tag: str = ""):
    r = make_record(pulse, module, side, defect=defect)
    r.side["processed_at"] = f"2026-11-29T10:{minute:02d}:00.000+00:00"
    r.side["tag"] = tag
    return r


@pytest.fixture
def filled(store):
    """Ten modules, one side each a minute apart (M-00 oldest); odd ones good; tags by minute; M-03 also right."""
    store.write([_record(i, f"M-{i:02d}", minute=i, defect=i % 2 == 0, tag="night" if i >= 7 else "day")
                 for i in range(10)])
    store.write([_record(100, "M-03", "right", minute=30, tag="day")])
    return store


def _names(rows):
    return [(r["module"], r["side"]) for r in rows]


def test_newest_first_with_the_total_and_pages(filled):
    rows, total = filled.find_sides(HistoryQuery(limit=4))
    assert total == 11
    assert _names(rows) == [("M-03", "right"), ("M-09", "left"), ("M-08", "left"), ("M-07", "left")]
    page2, _ = filled.find_sides(HistoryQuery(limit=4, skip=4))
    assert _names(page2) == [("M-06", "left"), ("M-05", "left"), ("M-04", "left"), ("M-03", "left")]
    r = rows[1]
    assert r["score"] == 0.3 and r["is_anomalous"] is False and r["tag"] == "night" and r["tile_count"] == 9
    assert r["verified"] == 0 and r["reviewed"] is False and len(r["result_id"]) == 24
    assert filled.get_module("M-09")["left"]["result_id"] == r["result_id"]


@pytest.mark.parametrize("params, want", [
    ({"verdict": "anomalous"}, ["M-03", "M-08", "M-06", "M-04", "M-02", "M-00"]),
    ({"verdict": "good", "tag": "night"}, ["M-09", "M-07"]),
    ({"from": "2026-11-29T10:02:00Z", "to": "2026-11-29T10:05:00+00:00"}, ["M-04", "M-03", "M-02"]),
    ({"from": "2026-11-29T11:02:00+01:00", "to": "2026-11-29T11:04:00+01:00"}, ["M-03", "M-02"]),
    ({"module": "M-0", "tag": "day", "order": "asc", "limit": "3"}, ["M-00", "M-01", "M-02"]),
    ({"module": "M-03"}, ["M-03", "M-03"]),
    ({"sort": "module", "order": "desc", "limit": "2"}, ["M-09", "M-08"]),
    ({"sort": "score", "verdict": "good", "order": "asc", "limit": "1"}, ["M-01"]),
])
def test_filters_and_sorting(filled, params, want):
    rows, total = filled.find_sides(history_query(params))
    assert [r["module"] for r in rows] == want
    if "limit" not in params:
        assert total == len(want)


def test_review_and_reimaging_update_the_row(filled):
    side = filled.get_module("M-05")["left"]
    for t in range(side["tile_count"]):
        review.verify(filled, "M-05", "left", t)
    review.verify(filled, "M-06", "left", 0)
    reviewed, total = filled.find_sides(HistoryQuery(reviewed=True))
    assert _names(reviewed) == [("M-05", "left")] and total == 1
    partly = [r for r in filled.find_sides(HistoryQuery(reviewed=False))[0] if r["module"] == "M-06"]
    assert partly[0]["verified"] == 1
    filled.write([_record(7, "M-05", minute=40, defect=True)])      # the left side imaged again
    rows, total = filled.find_sides(HistoryQuery(module="M-05"))
    assert total == 1 and rows[0]["is_anomalous"] is True and rows[0]["reviewed"] is False
    assert rows[0]["processed_at"].startswith("2026-11-29T10:40")


def test_a_replay_keeps_the_reviewed_row(filled):
    r = _record(0, "M-00", minute=0, tag="day")
    review.verify(filled, "M-00", "left", 0)
    filled.write([r])     # the spool replays the result the side already shows
    row = filled.find_sides(HistoryQuery(module="M-00"))[0][0]
    assert row["verified"] == 1


def test_filter_by_model_version(store):
    for i, version in enumerate(["pads@1.0", "pads@1.1", None, "pads@1.1"]):
        r = _record(i, f"V-{i}", minute=i)
        r.side["model_version"] = version
        store.write([r])
    rows, total = store.find_sides(history_query({"model_version": "pads@1.1"}))
    assert [r["module"] for r in rows] == ["V-3", "V-1"] and total == 2
    assert rows[0]["model_version"] == "pads@1.1"


def test_a_store_from_before_the_registry_gets_the_model_version_column(tmp_path):
    path = str(tmp_path / "old")
    with LocalStore(path).start() as s:
        r = _record(1, "M-1")
        r.side["model_version"] = "pads@2.0"
        s.write([r, _record(2, "M-2")])
        s._db.executescript("DROP INDEX sides_model; ALTER TABLE sides DROP COLUMN model_version;")
    with LocalStore(path).start() as s:
        rows, total = s.find_sides(HistoryQuery(model_version="pads@2.0"))
        assert total == 1 and rows[0]["module"] == "M-1"


def test_a_store_from_before_the_history_is_indexed_when_opened(tmp_path):
    path = str(tmp_path / "old")
    with LocalStore(path).start() as s:
        s.write([_record(i, f"M-{i}", minute=i) for i in range(3)])
        s._db.execute("DROP TABLE sides")   # what an older vi_stream left
    with LocalStore(path).start() as s:
        rows, total = s.find_sides(HistoryQuery())
        assert total == 3 and [r["module"] for r in rows] == ["M-2", "M-1", "M-0"]


def test_the_old_mongo_database_is_indexed_too(store):
    if not hasattr(store, "db"):
        pytest.skip("MongoDB only (the local store is tested above)")
    store.write([_record(i, f"M-{i}", minute=i) for i in range(3)])
    store.db.sides.drop()
    store.ensure_indexes()
    assert store.find_sides(HistoryQuery())[1] == 3


@pytest.mark.parametrize("where", ["", "is_anomalous = 1", "reviewed = 0", "tag = 'x'", "module >= 'M' AND module < 'N'",
                                   "model_version = 'pads@1.0'"])
def test_local_history_reads_indexes_not_the_table(tmp_path, where):
    with LocalStore(str(tmp_path / "s")).start() as s:
        cond = f" WHERE {where}" if where else ""
        plan = [r[3] for r in s._db.execute(
            f"EXPLAIN QUERY PLAN SELECT row FROM sides{cond} ORDER BY processed_at DESC LIMIT 50")]
        reads = [line for line in plan if "sides" in line]
        assert reads and all("USING" in line for line in reads), plan   # a plain "SCAN sides" reads every row


@pytest.mark.parametrize("params, words", [
    ({"verdict": "bad"}, "verdict must be one of anomalous, good"),
    ({"from": "yesterday"}, "from must be an ISO-8601 time"),
    ({"to": "2026-11-29T10:00:00"}, "must name its time zone"),
    ({"limit": "0"}, "limit must be 1-500"),
    ({"skip": "x"}, "skip must be an integer"),
    ({"sort": "size"}, "sort must be one of processed_at, score, module"),
    ({"colour": "red"}, "unknown history filter(s): colour"),
])
def test_bad_filters_are_named(params, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        history_query(params)
