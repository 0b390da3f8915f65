"""Gate sets, shadow comparisons and batch records on MongoDB, one small object each.

Each shares the store's database and its error mapping (:meth:`~vi_stream.store.mongo.MongoStore.call`:
a server out of reach is StoreUnavailable) and owns one collection: ``gate_sets`` (frozen
promotion-gate sets, unique ``id``), ``shadow`` (shadow-mode comparisons), ``batches``
(``vi_stream batch`` runs, unique ``id``), ``trend_points`` (the monitor's trends, unique by source, time
and kind); newest first is by ``_id``. They are apart from the results
so that what needs a batch record is handed batch records, not the whole store.
"""
from __future__ import annotations

from typing import Any

from vi_stream.errors import NotFoundError
from vi_stream.store.mongo_docs import from_mongo, to_mongo


def ensure_indexes(db: Any) -> None:
    """The unique ids of gate sets and batches (the caller maps a server out of reach)."""
    db.gate_sets.create_index([("id", 1)], unique=True, name="id")
    db.batches.create_index([("id", 1)], unique=True, name="id")
    db.trend_points.create_index([("source", 1), ("t", 1), ("kind", 1)], unique=True, name="source_time")
    db.trend_points.create_index([("t", 1)], name="time")


class MongoGateSets:
    """:class:`~vi_stream.store.protocols.GateSets` on ``store``'s database."""

    def __init__(self, store: Any):
        self._store = store

    def put_gate_set(self, doc: dict) -> None:
        self._store.call("keep a gate set", lambda: self._store.db.gate_sets.insert_one(to_mongo(dict(doc))))

    def get_gate_set(self, gate_id: str | None = None) -> dict | None:
        q = {} if gate_id is None else {"id": gate_id}
        docs = self._store.call("read a gate set", lambda: list(
            self._store.db.gate_sets.find(q, {"_id": 0}).sort("_id", -1).limit(1)))
        return from_mongo(docs[0]) if docs else None


class MongoShadow:
    """:class:`~vi_stream.store.protocols.ShadowRecords` on ``store``'s database."""

    def __init__(self, store: Any):
        self._store = store

    def put_shadow(self, doc: dict) -> None:
        self._store.call("keep a shadow comparison", lambda: self._store.db.shadow.insert_one(to_mongo(dict(doc))))

    def list_shadow(self, limit: int = 50) -> list[dict]:
        docs = self._store.call("read shadow comparisons", lambda: list(
            self._store.db.shadow.find({}, {"_id": 0}).sort("_id", -1).limit(limit)))
        return [from_mongo(d) for d in docs]


class MongoBatches:
    """:class:`~vi_stream.store.protocols.BatchRecords` on ``store``'s database."""

    def __init__(self, store: Any):
        self._store = store

    def put_batch(self, doc: dict) -> None:
        self._store.call("record a batch", lambda: self._store.db.batches.insert_one(to_mongo(dict(doc))))

    def update_batch(self, batch_id: str, fields: dict) -> None:
        res = self._store.call("update a batch", lambda: self._store.db.batches.update_one(
            {"id": batch_id}, {"$set": to_mongo(dict(fields))}))
        if res.matched_count != 1:
            raise NotFoundError(f"no batch {batch_id!r}")

    def get_batch(self, batch_id: str) -> dict:
        doc = self._store.call("read a batch", lambda: self._store.db.batches.find_one({"id": batch_id}, {"_id": 0}))
        if doc is None:
            raise NotFoundError(f"no batch {batch_id!r}")
        return from_mongo(doc)

    def list_batches(self, limit: int = 50) -> list[dict]:
        docs = self._store.call("list batches", lambda: list(
            self._store.db.batches.find({}, {"_id": 0}).sort("_id", -1).limit(limit)))
        return [from_mongo(d) for d in docs]


class MongoTrendPoints:
    """:class:`~vi_stream.store.protocols.TrendPoints` on ``store``'s database."""

    def __init__(self, store: Any):
        self._store = store

    def put_trend_points(self, points: list[dict]) -> None:
        def put() -> None:   # a few points a tick: one upsert each (a retry replaces what is there)
            for p in points:
                self._store.db.trend_points.replace_one({"source": p["source"], "t": float(p["t"]), "kind": p["kind"]},
                                                        to_mongo(dict(p, t=float(p["t"]))), upsert=True)
        self._store.call("keep trend points", put)

    def trend_points(self, source: str | None, since: float, until: float, limit: int = 100_000) -> list[dict]:
        q: dict = {"t": {"$gte": since, "$lt": until}}
        if source is not None:
            q["source"] = source
        docs = self._store.call("read trend points", lambda: list(
            self._store.db.trend_points.find(q, {"_id": 0}).sort("t", 1).limit(limit)))
        return [from_mongo(d) for d in docs]

    def prune_trend_points(self, before: float) -> int:
        res = self._store.call("prune trend points", lambda: self._store.db.trend_points.delete_many(
            {"t": {"$lt": before}}))
        return int(res.deleted_count)
