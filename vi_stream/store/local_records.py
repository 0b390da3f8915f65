"""Gate sets, shadow comparisons and batch records in the local store, one small object each.

Each shares the store's catalogue (its connection, lock and folder guard, through
:meth:`~vi_stream.store.local.LocalStore.reading` and ``transaction``) and owns one table of
JSON documents, appended in order (``seq``)::

    gate_sets (seq, id, doc)   frozen promotion-gate sets
    shadow (seq, doc)          shadow-mode comparisons
    batches (seq, id, doc)     ``vi_stream batch`` runs
    trend_points (source, kind, t, doc)   the monitor's trends (10 s bins, drift chunks), by time

They are apart from the results so that what needs a batch record is handed batch records,
not the whole store (:class:`~vi_stream.store.protocols.BatchRecords` and its siblings).
"""
from __future__ import annotations

import json
from typing import Any

from vi_stream.errors import NotFoundError

SCHEMA = """
CREATE TABLE IF NOT EXISTS gate_sets (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shadow (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trend_points (source TEXT NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL, doc TEXT NOT NULL,
                                         PRIMARY KEY (source, t, kind));
CREATE INDEX IF NOT EXISTS trend_points_time ON trend_points (t);
"""


class LocalGateSets:
    """:class:`~vi_stream.store.protocols.GateSets` in ``catalogue`` (a LocalStore)."""

    def __init__(self, catalogue: Any):
        self._cat = catalogue

    def put_gate_set(self, doc: dict) -> None:
        with self._cat.transaction("keep a gate set") as db:
            db.execute("INSERT INTO gate_sets (id, doc) VALUES (?, ?)", (doc["id"], json.dumps(doc)))

    def get_gate_set(self, gate_id: str | None = None) -> dict | None:
        with self._cat.reading() as db:
            row = (db.execute("SELECT doc FROM gate_sets WHERE id = ?", (gate_id,)) if gate_id is not None
                   else db.execute("SELECT doc FROM gate_sets ORDER BY seq DESC LIMIT 1")).fetchone()
        return json.loads(row[0]) if row else None


class LocalShadow:
    """:class:`~vi_stream.store.protocols.ShadowRecords` in ``catalogue`` (a LocalStore)."""

    def __init__(self, catalogue: Any):
        self._cat = catalogue

    def put_shadow(self, doc: dict) -> None:
        with self._cat.transaction("keep a shadow comparison") as db:
            db.execute("INSERT INTO shadow (doc) VALUES (?)", (json.dumps(doc),))

    def list_shadow(self, limit: int = 50) -> list[dict]:
        with self._cat.reading() as db:
            rows = db.execute("SELECT doc FROM shadow ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]


class LocalBatches:
    """:class:`~vi_stream.store.protocols.BatchRecords` in ``catalogue`` (a LocalStore)."""

    def __init__(self, catalogue: Any):
        self._cat = catalogue

    def put_batch(self, doc: dict) -> None:
        with self._cat.transaction("record a batch") as db:
            db.execute("INSERT INTO batches (id, doc) VALUES (?, ?)", (doc["id"], json.dumps(doc)))

    def update_batch(self, batch_id: str, fields: dict) -> None:
        with self._cat.transaction("update a batch") as db:
            row = db.execute("SELECT doc FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no batch {batch_id!r}")
            db.execute("UPDATE batches SET doc = ? WHERE id = ?", (json.dumps({**json.loads(row[0]), **fields}), batch_id))

    def get_batch(self, batch_id: str) -> dict:
        with self._cat.reading() as db:
            row = db.execute("SELECT doc FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no batch {batch_id!r}")
        return json.loads(row[0])

    def list_batches(self, limit: int = 50) -> list[dict]:
        with self._cat.reading() as db:
            rows = db.execute("SELECT doc FROM batches ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]


class LocalTrendPoints:
    """:class:`~vi_stream.store.protocols.TrendPoints` in ``catalogue`` (a LocalStore)."""

    def __init__(self, catalogue: Any):
        self._cat = catalogue

    def put_trend_points(self, points: list[dict]) -> None:
        with self._cat.transaction("keep trend points") as db:
            db.executemany("INSERT OR REPLACE INTO trend_points (source, kind, t, doc) VALUES (?, ?, ?, ?)",
                           [(p["source"], p["kind"], float(p["t"]), json.dumps(p)) for p in points])

    def trend_points(self, source: str | None, since: float, until: float, limit: int = 100_000) -> list[dict]:
        where, args = "t >= ? AND t < ?", [since, until]
        if source is not None:
            where, args = where + " AND source = ?", args + [source]
        with self._cat.reading() as db:
            rows = db.execute(f"SELECT doc FROM trend_points WHERE {where} ORDER BY t LIMIT ?",
                              (*args, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def prune_trend_points(self, before: float) -> int:
        with self._cat.transaction("prune trend points") as db:
            return db.execute("DELETE FROM trend_points WHERE t < ?", (before,)).rowcount
