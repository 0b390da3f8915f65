"""MongoDB + GridFS store with the ATLAS ITk visual-inspection schema.

``modules``: one document per module (``name``, ``description``, ``uploaded_by``,
``uploaded_at``, ``last_updated_at``, ``left``, ``right``); each side holds ``tag``,
``tile_count``, ``verified_masks`` and the image groups ``original``,
``preprocessed``, ``anomaly_map``, ``mask``, ``corrected_mask``, each with
``thumbnail``/``full`` -> ``src_id`` (ObjectId of the whole image in GridFS) and
``tiled_id`` (ObjectIds of the tile images). Our additions sit beside them in the
side (score, defects, model_id, processing_parameters, pulse_id, ...).
``results``: every processed frame (the side as it was stored), ``_id`` = result id.

Ids are deterministic (see :mod:`vi_stream.store.record`), so replays are upserts: an
image that exists is not written again, a result is replaced by itself, and a side
already showing the result is left alone (its review survives).

Longer than 300 lines: the results family (write with its compare-and-set, the history's rows,
one acquisition read back and reviewed) shares the database and its error mapping; the other
families are apart (mongo_models, mongo_records).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from vi_stream.store import record as rec
from vi_stream.store.protocols import HistoryQuery, side_row, supersedes
from vi_stream.errors import ConfigError, NotFoundError, StoreUnavailable
from vi_stream.store.uris import redact
from vi_stream.store.mongo_docs import from_mongo, oid as _oid, to_mongo
from vi_stream.store import mongo_records
from vi_stream.store import mongo_models
from vi_stream.store.mongo_models import MongoShelf
from vi_stream.store.mongo_records import MongoBatches, MongoGateSets, MongoShadow, MongoTrendPoints

PUT_WAIT = 1.0   # s a half-written image may take before its chunks count as a write cut short (_put_once)


def _transient(err: Exception) -> bool:
    import pymongo.errors as pe
    if isinstance(err, (pe.ConnectionFailure, pe.ServerSelectionTimeoutError, pe.NetworkTimeout,
                        pe.WTimeoutError, pe.ExecutionTimeout)):
        return True
    if isinstance(err, pe.OperationFailure):
        # NotWritablePrimary/PrimarySteppedDown (10107/189/11602), out of disk space (14031), quota (12501)
        return err.code in (10107, 189, 11600, 11602, 13435, 13436, 91, 14031, 12501) or \
            "NotPrimary" in str(err) or err.has_error_label("RetryableWriteError")
    return isinstance(err, OSError)


class MongoStore:
    """``uri`` names the database in its path (``mongodb://host/itk``; default ``vi_stream``).

    ``client`` replaces the connection (tests pass a ``mongomock.MongoClient``).
    """

    def __init__(self, uri: str = "mongodb://127.0.0.1:27017/vi_stream", client: Any = None,
                 database: str | None = None, timeout_ms: int = 5000):
        import pymongo
        from pymongo.uri_parser import parse_uri
        self.description = redact(uri)
        try:
            parsed = parse_uri(uri) if client is None else {"database": None}
        except (pymongo.errors.InvalidURI, pymongo.errors.ConfigurationError, ValueError) as err:
            raise ConfigError(f"bad MongoDB URI {redact(uri)}: {err}") from err
        self._name = database or parsed.get("database") or "vi_stream"
        self._uri, self._timeout_ms = uri, timeout_ms
        self._own_client = client is None
        self.client = client
        self.db = None
        self._lock = threading.Lock()
        self._indexed = False
        # The families beside the results, each its own small object on this database.
        self.models = MongoShelf(self)
        self.gate_sets, self.shadows, self.batches = MongoGateSets(self), MongoShadow(self), MongoBatches(self)
        self.trends = MongoTrendPoints(self)

    def start(self) -> "MongoStore":
        """Create the client (it connects in the background) and try the indexes once."""
        if self.db is not None:
            return self
        if self.client is None:
            import pymongo
            t = self._timeout_ms
            self.client = pymongo.MongoClient(self._uri, serverSelectionTimeoutMS=t, connectTimeoutMS=t,
                                              socketTimeoutMS=4 * t, retryWrites=True, tz_aware=True)
        self.db = self.client[self._name]
        try:
            self.ensure_indexes()
        except StoreUnavailable:
            pass  # the server may come later: the writer spools until it does and retries the indexes
        return self

    def __enter__(self) -> "MongoStore":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, what: str, fn, *a, **k):
        """``fn(*a, **k)``, a server out of reach (or not writable now) raised as StoreUnavailable."""
        try:
            return fn(*a, **k)
        except Exception as err:
            if _transient(err):
                raise StoreUnavailable(f"MongoDB {self.description}: cannot {what}: {err}") from err
            raise

    def ensure_indexes(self) -> None:
        import pymongo

        def make():
            self.db.modules.create_index([("name", pymongo.ASCENDING)], unique=True, name="name_unique")
            self.db.modules.create_index([("last_updated_at", pymongo.DESCENDING)], name="last_updated")
            self.db.results.create_index([("module", 1), ("side", 1), ("processed_at", -1)], name="module_side")
            self.db.results.create_index([("pulse_id", 1)], name="pulse_id")
            self.db.results.create_index([("processed_at", 1)], name="time")
            self.db.sides.create_index([("is_anomalous", 1), ("decision", 1), ("processed_at", 1)], name="queue")
            self.db.sides.create_index([("decision", 1), ("processed_at", -1)], name="decision")
            self.db.sides.create_index([("module", 1), ("side", 1)], unique=True, name="module_side")
            self.db.sides.create_index([("processed_at", -1)], name="time")
            self.db.sides.create_index([("is_anomalous", 1), ("processed_at", -1)], name="verdict")
            self.db.sides.create_index([("reviewed", 1), ("processed_at", -1)], name="reviewed")
            self.db.sides.create_index([("tag", 1), ("processed_at", -1)], name="tag")
            self.db.sides.create_index([("score", -1)], name="score")
            self.db.sides.create_index([("model_version", 1), ("processed_at", -1)], name="model_version")
            mongo_models.ensure_indexes(self.db)
            mongo_records.ensure_indexes(self.db)
            if not self.db.sides.find_one({}, {"_id": 1}):
                # a database written before the history existed: index the sides it holds, once
                for doc in self.db.modules.find({}, {s: 1 for s in ("name",) + rec.SIDES}):
                    for s in rec.SIDES:
                        if doc.get(s):
                            self._index_side(doc["name"], s, from_mongo(doc[s]))
        self.call("create indexes", make)  # create_index is a no-op when the same index exists
        self._indexed = True

    def close(self) -> None:
        if self._own_client and self.client is not None:
            self.client.close()
            self.client = None
        self.db = None

    # ------------------------------------------------------------------ writing
    def _fs(self):
        import gridfs
        return gridfs.GridFS(self.db)

    def put_images(self, images: dict[str, bytes], module: str = "", side: str = "", result_id: str = "") -> None:
        if not images:
            return

        def put():
            fs = self._fs()
            ids = [_oid(i) for i in images]
            have = {d["_id"] for d in self.db.fs.files.find({"_id": {"$in": ids}}, {"_id": 1, "length": 1})}
            for i, oid in zip(images, ids):
                if oid not in have:
                    self._put_once(fs, oid, images[i], filename=f"{i}.png", contentType="image/png",
                                   metadata={"module": module, "side": side, "result_id": result_id})
        self.call("write images", put)

    def _put_once(self, fs, oid, data: bytes, **kw) -> None:
        """``data`` into GridFS under ``oid`` (the bytes' own hash: one id, one content), once however
        many writers put it at the same moment. A FileExists with no files document is another writer
        between its chunks and its files document (two workers storing the same empty mask), or a
        write cut short: wait for the document for up to PUT_WAIT s, then clear the chunks and write
        again; chunks cleared under another writer are written back with the same bytes. Still
        nothing: StoreUnavailable (the record is spooled and written again later, never dropped)."""
        from gridfs.errors import FileExists

        def done() -> bool:
            return bool(self.db.fs.files.count_documents({"_id": oid}, limit=1))
        try:
            fs.put(data, _id=oid, **kw)
            return
        except FileExists:
            pass
        deadline = time.monotonic() + PUT_WAIT
        while not done():
            if time.monotonic() > deadline:
                self.db.fs.chunks.delete_many({"files_id": oid})
                try:
                    fs.put(data, _id=oid, **kw)
                    return
                except FileExists:
                    if done():
                        return
                    raise StoreUnavailable(f"MongoDB {self.description}: cannot write image {oid}: another "
                                           "writer holds it half-written; to be written again") from None
            time.sleep(0.02)

    def write(self, records: list[rec.Record]) -> None:
        if not self._indexed:
            self.ensure_indexes()
        for r in records:
            self.put_images(r.images, r.module, r.side_name, r.id)
        for r in records:
            self.call("write results", self._write_one, r)

    def _write_one(self, r: rec.Record) -> None:
        import pymongo.errors
        side = to_mongo(r.side)
        # $setOnInsert: a replay finds the result there, maybe reviewed since (its copy keeps its review)
        self.db.results.update_one({"_id": _oid(r.id)}, {"$setOnInsert": {"module": r.module, "side": r.side_name,
                                                                          **side}}, upsert=True)
        for _attempt in range(8):   # a compare-and-set on the side: other workers may write it meanwhile
            current = self.db.modules.find_one({"name": r.module}, {r.side_name: 1})
            shown = (current or {}).get(r.side_name)
            if shown and shown.get("result_id") == _oid(r.id):
                # a replay: the side already shows this result (and maybe its review); its history row
                # may not (a crash between the two writes), so that is written again from the side as stored
                self._index_side(r.module, r.side_name, from_mongo(shown))
                return
            if not supersedes(r.side, from_mongo(shown) if shown else None):
                return   # an older acquisition finished after a newer one (another worker): the side stays
            now = datetime.now(timezone.utc)
            update = {"$set": {r.side_name: side, "last_updated_at": now}}
            if current is None:
                update["$setOnInsert"] = {"description": "", "uploaded_by": r.uploaded_by, "uploaded_at": now}
                try:
                    self.db.modules.update_one({"name": r.module}, update, upsert=True)
                except pymongo.errors.DuplicateKeyError:
                    continue   # another writer inserted the module first: decide again against it
            else:
                unchanged = {"name": r.module, f"{r.side_name}.result_id": shown["result_id"]} if shown else \
                    {"name": r.module, r.side_name: None}
                if self.db.modules.update_one(unchanged, update).matched_count != 1:
                    continue   # the side changed since it was read: decide again
            now_shown = (self.db.modules.find_one({"name": r.module}, {r.side_name: 1}) or {}).get(r.side_name)
            self._index_side(r.module, r.side_name, from_mongo(now_shown) if now_shown else r.side)
            return
        raise StoreUnavailable(f"MongoDB {self.description}: module {r.module!r} {r.side_name} kept changing "
                               "under this write; it is retried")

    def _index_side(self, module: str, side_name: str, side: dict) -> None:
        """The side's history row, written after the module document (a replay rewrites it)."""
        row = to_mongo(side_row(module, side_name, side))
        self.db.sides.replace_one({"module": module, "side": side_name}, row, upsert=True)

    def set_side(self, name: str, side_name: str, side: dict, expect_result_id: str) -> bool:
        res = self.call("update the module", self.db.modules.update_one,
                         {"name": name, f"{side_name}.result_id": _oid(expect_result_id)},
                         {"$set": {side_name: to_mongo(side), "last_updated_at": datetime.now(timezone.utc)}})
        if res.matched_count != 1:
            return False
        self.call("update the module", self._index_side, name, side_name, side)
        self.call("update a result", self.db.results.replace_one, {"_id": _oid(expect_result_id)},
                  {"module": name, "side": side_name, **to_mongo(side)})
        return True

    def get_result(self, result_id: str) -> tuple[str, str, dict]:
        try:
            key = _oid(result_id)
        except Exception:   # bson.errors.InvalidId: not an id this store could hold
            raise NotFoundError(f"no result {result_id!r}") from None
        doc = self.call("read a result", self.db.results.find_one, {"_id": key})
        if doc is None:
            raise NotFoundError(f"no result {result_id!r}")
        side = from_mongo({k: v for k, v in doc.items() if k not in ("_id", "module", "side")})
        return doc["module"], doc["side"], side

    def set_result(self, result_id: str, side: dict) -> None:
        module, side_name, _ = self.get_result(result_id)
        self.call("update a result", self.db.results.replace_one, {"_id": _oid(result_id)},
                  {"module": module, "side": side_name, **to_mongo(side)})

    def list_results(self, module: str, side_name: str, limit: int = 50) -> list[dict]:
        docs = self.call("list results", lambda: list(self.db.results.find(
            {"module": module, "side": side_name}).sort([("processed_at", -1)]).limit(limit)))
        return [side_row(module, side_name, from_mongo(d)) for d in docs]

    def results_between(self, since: str, until: str, limit: int) -> list[dict]:
        q = {"processed_at": {"$gte": datetime.fromisoformat(since), "$lt": datetime.fromisoformat(until)}}
        docs = self.call("read results", lambda: list(self.db.results.find(q).sort([("processed_at", 1)]).limit(limit)))
        return [side_row(d["module"], d["side"], from_mongo(d)) for d in docs]

    def find_sides(self, query: HistoryQuery) -> tuple[list[dict], int]:
        q: dict[str, Any] = {}
        when = {}
        if query.since is not None:
            when["$gte"] = datetime.fromisoformat(query.since)
        if query.until is not None:
            when["$lt"] = datetime.fromisoformat(query.until)
        if when:
            q["processed_at"] = when
        if query.anomalous is not None:
            q["is_anomalous"] = query.anomalous
        if query.reviewed is not None:
            q["reviewed"] = query.reviewed
        if query.tag is not None:
            q["tag"] = query.tag
        if query.model_version is not None:
            q["model_version"] = query.model_version
        if query.decision is not None:
            q["decision"] = {"none": None, "any": {"$ne": None}}.get(query.decision, query.decision)
        if query.module is not None:   # a name prefix: an anchored, escaped regex uses the index
            import re
            q["module"] = {"$regex": "^" + re.escape(query.module)}
        d = -1 if query.descending else 1
        sort = [(query.sort, d), ("module", d), ("side", d)]

        def find():
            rows = list(self.db.sides.find(q, {"_id": 0}).sort(sort).skip(query.skip).limit(query.limit))
            return rows, self.db.sides.count_documents(q)
        rows, total = self.call("read the history", find)
        return [from_mongo(r) for r in rows], total

    # ------------------------------------------------------------------ reading
    def list_modules(self, limit: int = 100, skip: int = 0) -> list[dict]:
        cur = self.call("list modules", lambda: list(
            self.db.modules.find({}).sort([("last_updated_at", -1), ("name", 1)]).skip(skip).limit(limit)))
        return [from_mongo(d) for d in cur]

    def get_module(self, name: str) -> dict:
        doc = self.call("read a module", self.db.modules.find_one, {"name": name})
        if doc is None:
            raise NotFoundError(f"no module {name!r}")
        return from_mongo(doc)

    def get_image(self, image_id: str) -> bytes:
        import gridfs

        def get():
            try:
                return self._fs().get(_oid(image_id)).read()
            except gridfs.errors.NoFile as err:
                raise NotFoundError(f"no image {image_id}") from err
        return self.call("read an image", get)

    def count_results(self, module: str | None = None) -> int:
        q = {} if module is None else {"module": module}
        return self.call("count results", self.db.results.count_documents, q)
