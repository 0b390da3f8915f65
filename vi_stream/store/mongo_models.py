"""The model registry's shelf on MongoDB (:class:`~vi_stream.store.protocols.ModelShelf`).

Collections: ``models`` (one document per version, unique on name+major+minor),
``aliases`` (unique on alias), ``alias_changes`` (the log); the files in the GridFS
bucket ``model_files`` with the SHA-256 as ``_id``. An alias moves with one conditional
update (the compare-and-set) and its log entry is written after it.
"""
from __future__ import annotations

from typing import Any

from vi_stream.errors import NotFoundError, StateError
from vi_stream.store.mongo_docs import from_mongo, to_mongo


def ensure_indexes(db: Any) -> None:
    """Versions unique on name+major+minor, aliases unique (the caller maps a server out of reach)."""
    db.models.create_index([("name", 1), ("major", -1), ("minor", -1)], unique=True, name="version")
    db.aliases.create_index([("alias", 1)], unique=True, name="alias")
    db.alias_changes.create_index([("alias", 1), ("_id", -1)], name="alias")


class MongoShelf:
    """:class:`~vi_stream.store.protocols.ModelShelf` on ``store``'s database (and its ``call``)."""

    def __init__(self, store: Any):
        self._store = store

    def _model_fs(self):
        import gridfs
        return gridfs.GridFS(self._store.db, collection="model_files")

    def put_model(self, doc: dict, data: bytes) -> dict:
        import gridfs
        import pymongo.errors
        key = {"name": doc["name"], "major": doc["major"], "minor": doc["minor"]}

        def put():
            have = self._store.db.models.find_one(key, {"_id": 0})
            if have is not None:
                if have["sha256"] != doc["sha256"]:
                    raise StateError(f"{doc['name']}@{doc['version']} is registered already, with another file "
                                     f"({have['sha256'][:12]}); give a new version")
                return from_mongo(have)
            fs = self._model_fs()
            if not fs.exists(doc["sha256"]):
                try:
                    fs.put(data, _id=doc["sha256"], filename=f"{doc['name']}@{doc['version']}.npz",
                           contentType="application/octet-stream")
                except gridfs.errors.FileExists:
                    pass   # the same bytes, put meanwhile by another registration
            try:
                self._store.db.models.insert_one(to_mongo(dict(doc)))
            except pymongo.errors.DuplicateKeyError:
                return put()   # registered meanwhile: same file or a clear conflict
            return doc
        return self._store.call("register a model", put)

    def get_model_doc(self, name: str, major: int, minor: int) -> dict:
        doc = self._store.call("read a model", self._store.db.models.find_one, {"name": name, "major": major, "minor": minor},
                         {"_id": 0})
        if doc is None:
            raise NotFoundError(f"no model {name}@{major}.{minor}")
        return from_mongo(doc)

    def list_model_docs(self, name: str | None = None) -> list[dict]:
        q = {} if name is None else {"name": name}
        docs = self._store.call("list models", lambda: list(
            self._store.db.models.find(q, {"_id": 0}).sort([("name", 1), ("major", -1), ("minor", -1)])))
        return [from_mongo(d) for d in docs]

    def get_model_file(self, sha256: str) -> bytes:
        import gridfs

        def get():
            try:
                return self._model_fs().get(sha256).read()
            except gridfs.errors.NoFile as err:
                raise NotFoundError(f"model file {sha256[:12]} is registered but missing from GridFS") from err
        return self._store.call("read a model file", get)

    def get_aliases(self) -> dict[str, dict]:
        docs = self._store.call("read the aliases", lambda: list(self._store.db.aliases.find({}, {"_id": 0}).sort("alias", 1)))
        return {d.pop("alias"): from_mongo(d) for d in docs}

    def set_alias(self, alias: str, target: dict, expected: str | None, change: dict) -> bool:
        import pymongo.errors
        doc = to_mongo({"alias": alias, **target})

        def move() -> bool:
            if expected is None:
                self._store.db.aliases.replace_one({"alias": alias}, doc, upsert=True)
            elif expected == "":
                try:
                    self._store.db.aliases.insert_one(dict(doc))
                except pymongo.errors.DuplicateKeyError:
                    return False
            else:
                name, _, version = expected.partition("@")
                res = self._store.db.aliases.replace_one({"alias": alias, "name": name, "version": version}, doc)
                if res.matched_count != 1:
                    return False
            self._store.db.alias_changes.insert_one(to_mongo({"alias": alias, **change}))
            return True
        return self._store.call("move an alias", move)

    def alias_changes(self, alias: str | None = None, limit: int = 100) -> list[dict]:
        q = {} if alias is None else {"alias": alias}
        docs = self._store.call("read the alias log", lambda: list(
            self._store.db.alias_changes.find(q, {"_id": 0}).sort("_id", -1).limit(limit)))
        return [from_mongo(d) for d in docs]

    def update_model_doc(self, name: str, major: int, minor: int, fields: dict) -> dict:
        from pymongo import ReturnDocument
        doc = self._store.call("update a model version", self._store.db.models.find_one_and_update,
                         {"name": name, "major": major, "minor": minor}, {"$set": to_mongo(dict(fields))},
                         {"_id": 0}, return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFoundError(f"no model {name}@{major}.{minor}")
        return from_mongo(doc)
