"""Gate sets, shadow comparisons and batch records on MongoDB, one small object each.

Each shares the store's database and its error mapping (:meth:`~vi_stream.store.mongo.MongoStore.call`:
a server out of reach is StoreUnavailable) and owns one collection: ``gate_sets`` (frozen
promotion-gate sets, unique ``id``), ``shadow`` (shadow-mode comparisons), ``batches``
(``vi_stream batch`` runs, unique ``id``); newest first is by ``_id``. They are apart from the results
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
