"""The model registry's shelf in the local store (:class:`~vi_stream.store.protocols.ModelShelf`).

Layout under the store folder, beside the results::

    catalogue.sqlite   models (name, major, minor, sha256, doc), aliases (alias, doc),
                       alias_changes (seq, alias, doc)
    models/<sha256>.npz   the model files, content-addressed

A file is written (temp name, fsync, rename) before the row that names it, as images are.
An alias moves in one transaction with its log entry, after checking where it points.
"""
from __future__ import annotations

import json
import os
from typing import Any

from vi_stream.errors import NotFoundError, StateError
from vi_stream.io.files import fsync_dir, write_durably

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (name TEXT NOT NULL, major INTEGER NOT NULL, minor INTEGER NOT NULL,
                                   sha256 TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (name, major, minor));
CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alias_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, alias TEXT NOT NULL,
                                          doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alias_changes_alias ON alias_changes (alias, seq);
"""


def make_leaf(path: str) -> None:
    """Create ``path`` but not its parents: a store whose folder was removed is not recreated
    piecemeal by a write (OSError, which the transaction turns into StoreUnavailable)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass


def _target(doc: dict | None) -> str:
    return "" if not doc else f"{doc['name']}@{doc['version']}"


class LocalShelf:
    """:class:`~vi_stream.store.protocols.ModelShelf` in ``catalogue`` (a LocalStore: its folder, and its
    connection through ``reading()`` and ``transaction()``)."""

    def __init__(self, catalogue: Any):
        self._cat = catalogue

    def _model_path(self, sha256: str) -> str:
        return os.path.join(self._cat.folder, "models", sha256 + ".npz")

    def put_model(self, doc: dict, data: bytes) -> dict:
        path = self._model_path(doc["sha256"])
        with self._cat.transaction("register a model") as db:
            row = db.execute("SELECT doc FROM models WHERE name = ? AND major = ? AND minor = ?",
                             (doc["name"], doc["major"], doc["minor"])).fetchone()
            if row is not None:
                have = json.loads(row[0])
                if have["sha256"] != doc["sha256"]:
                    raise StateError(f"{doc['name']}@{doc['version']} is registered already, with another file "
                                     f"({have['sha256'][:12]}); give a new version")
                return have
            if not (os.path.exists(path) and os.path.getsize(path) == len(data)):
                make_leaf(os.path.dirname(path))
                write_durably(path, data)
                fsync_dir(os.path.dirname(path))
            db.execute("INSERT INTO models (name, major, minor, sha256, doc) VALUES (?, ?, ?, ?, ?)",
                       (doc["name"], doc["major"], doc["minor"], doc["sha256"], json.dumps(doc)))
        return doc

    def get_model_doc(self, name: str, major: int, minor: int) -> dict:
        with self._cat.reading() as db:
            row = db.execute("SELECT doc FROM models WHERE name = ? AND major = ? AND minor = ?",
                             (name, major, minor)).fetchone()
        if row is None:
            raise NotFoundError(f"no model {name}@{major}.{minor}")
        return json.loads(row[0])

    def list_model_docs(self, name: str | None = None) -> list[dict]:
        cond, args = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        with self._cat.reading() as db:
            rows = db.execute(f"SELECT doc FROM models {cond} ORDER BY name, major DESC, minor DESC",
                              args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def get_model_file(self, sha256: str) -> bytes:
        self._cat.check()   # a folder removed under us: StoreUnavailable, not "missing"
        try:
            with open(self._model_path(sha256), "rb") as f:
                return f.read()
        except FileNotFoundError as err:
            raise NotFoundError(f"model file {sha256[:12]} is registered but missing from {self._cat.folder}") from err

    def get_aliases(self) -> dict[str, dict]:
        with self._cat.reading() as db:
            rows = db.execute("SELECT alias, doc FROM aliases ORDER BY alias").fetchall()
        return {a: json.loads(d) for a, d in rows}

    def set_alias(self, alias: str, target: dict, expected: str | None, change: dict) -> bool:
        with self._cat.transaction("move an alias") as db:
            row = db.execute("SELECT doc FROM aliases WHERE alias = ?", (alias,)).fetchone()
            if expected is not None and _target(json.loads(row[0]) if row else None) != expected:
                return False
            db.execute("INSERT OR REPLACE INTO aliases (alias, doc) VALUES (?, ?)", (alias, json.dumps(target)))
            db.execute("INSERT INTO alias_changes (alias, doc) VALUES (?, ?)", (alias, json.dumps(change)))
        return True

    def alias_changes(self, alias: str | None = None, limit: int = 100) -> list[dict]:
        cond, args = ("WHERE alias = ?", [alias]) if alias is not None else ("", [])
        with self._cat.reading() as db:
            rows = db.execute(f"SELECT doc FROM alias_changes {cond} ORDER BY seq DESC LIMIT ?",
                              args + [limit]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def update_model_doc(self, name: str, major: int, minor: int, fields: dict) -> dict:
        with self._cat.transaction("update a model version") as db:
            row = db.execute("SELECT doc FROM models WHERE name = ? AND major = ? AND minor = ?",
                             (name, major, minor)).fetchone()
            if row is None:
                raise NotFoundError(f"no model {name}@{major}.{minor}")
            doc = {**json.loads(row[0]), **fields}
            db.execute("UPDATE models SET doc = ? WHERE name = ? AND major = ? AND minor = ?",
                       (json.dumps(doc), name, major, minor))
        return doc
