"""The embedded default store: a SQLite catalogue plus PNG files, same logical schema as MongoDB.

Layout under the store folder::

    catalogue.sqlite        modules (one JSON document per module, left/right sides),
                            results (every processed frame), images (id, length)
    images/ab/<id>.png      content-addressed images (id = SHA-256 prefix of the bytes)

Writes are atomic and durable in order: image files are written to a temp name,
fsync'ed and renamed first, then one SQLite transaction (synchronous=FULL) adds the
catalogue rows, so the catalogue never points at a file that is not complete on disk.
A crash in between leaves at most unreferenced files, which the replay then reuses.

The folder can vanish under a running daemon (``rm -rf``, a restore over it): SQLite would go on
writing to the deleted file. So every use checks that the folder and the catalogue are still the
ones opened (device and inode), before a transaction and again after its commit; if not, the
store is *lost*: StoreUnavailable (the writer spools), until a valid store is at the path again.
A catalogue found there is reopened (after ``PRAGMA quick_check``); an empty folder is
initialised afresh, with a warning that the previous store's contents are gone. The store
never recreates its folder itself once lost. At start a catalogue that fails ``quick_check`` is
refused with one line (ConfigError).

Longer than 300 lines: the catalogue's schema, its transactions (with the folder guard around
each) and the results family share one SQLite connection and lock; the other families are apart
(local_models, local_records).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
from typing import Iterator

from vi_stream.store import record as rec
from vi_stream.store.protocols import HistoryQuery, side_row, supersedes
from vi_stream.errors import ConfigError, NotFoundError, StoreUnavailable
from vi_stream.store import local_models, local_records
from vi_stream.io.files import fsync_dir, write_durably
from vi_stream.store.local_guard import CATALOGUE, FolderGuard, ident
from vi_stream.store.local_models import LocalShelf, make_leaf
from vi_stream.store.local_records import LocalBatches, LocalGateSets, LocalShadow, LocalTrendPoints

_SCHEMA = """
CREATE TABLE IF NOT EXISTS modules (name TEXT PRIMARY KEY, doc TEXT NOT NULL, last_updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (id TEXT PRIMARY KEY, module TEXT NOT NULL, side TEXT NOT NULL,
                                    pulse_id INTEGER, processed_at TEXT, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, length INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS modules_updated ON modules (last_updated_at);
CREATE INDEX IF NOT EXISTS results_module ON results (module, side, processed_at);
CREATE INDEX IF NOT EXISTS results_pulse ON results (pulse_id);
CREATE INDEX IF NOT EXISTS results_time ON results (processed_at);
CREATE TABLE IF NOT EXISTS sides (module TEXT NOT NULL, side TEXT NOT NULL, processed_at TEXT NOT NULL,
                                  score REAL NOT NULL, is_anomalous INTEGER NOT NULL, reviewed INTEGER NOT NULL,
                                  tag TEXT NOT NULL, model_version TEXT NOT NULL DEFAULT '', row TEXT NOT NULL,
                                  PRIMARY KEY (module, side));
CREATE INDEX IF NOT EXISTS sides_time ON sides (processed_at);
CREATE INDEX IF NOT EXISTS sides_verdict ON sides (is_anomalous, processed_at);
CREATE INDEX IF NOT EXISTS sides_reviewed ON sides (reviewed, processed_at);
CREATE INDEX IF NOT EXISTS sides_tag ON sides (tag, processed_at);
CREATE INDEX IF NOT EXISTS sides_score ON sides (score);
"""
_SIDES_MODEL_VERSION = """
CREATE INDEX IF NOT EXISTS sides_model ON sides (model_version, processed_at);
CREATE INDEX IF NOT EXISTS sides_queue ON sides (is_anomalous, decision, processed_at);
CREATE INDEX IF NOT EXISTS sides_decision ON sides (decision, processed_at);
"""
_SIDE_COLUMNS = {"processed_at": "processed_at", "score": "score", "module": "module"}


def _unavailable(err: Exception, what: str) -> StoreUnavailable:
    reason = os.strerror(err.errno) if isinstance(err, OSError) and err.errno else str(err)
    return StoreUnavailable(f"local store: cannot {what}: {reason}")


class LocalStore(FolderGuard):
    """A :class:`~vi_stream.store.protocols.Store` in a folder. ``start()`` opens it (creating it if needed)."""

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        self.description = f"local:{self.folder}"
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._identity: tuple | None = None   # (folder, catalogue) as (st_dev, st_ino) when opened
        self._lost: str | None = None          # why the store in use went away; None while it is there
        # The families beside the results, each its own small object on this catalogue.
        self.models = LocalShelf(self)
        self.gate_sets, self.shadows, self.batches = LocalGateSets(self), LocalShadow(self), LocalBatches(self)
        self.trends = LocalTrendPoints(self)

    @property
    def _db_path(self) -> str:
        return os.path.join(self.folder, CATALOGUE)

    def start(self) -> "LocalStore":
        if self._db is not None:
            return self
        try:
            os.makedirs(os.path.join(self.folder, "images"), exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot open the local store in {self.folder}: {err}") from err
        self._db = self._connect()
        self._lost = None
        self.ensure_indexes()
        return self

    def _connect(self) -> sqlite3.Connection:
        """Open the catalogue (WAL, synchronous=FULL) after checking it: ConfigError in one line."""
        path = self._db_path
        existed = os.path.exists(path) and os.path.getsize(path) > 0
        db = None
        try:
            db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")] if existed else ["ok"]
            self._identity = (ident(self.folder), ident(path))
        except (OSError, sqlite3.Error) as err:
            if db is not None:
                db.close()
            raise ConfigError(f"cannot open the local store {path}: {err}") from err
        if problems != ["ok"]:
            db.close()
            found = "; ".join(" ".join(p.split()) for p in problems if not p.startswith("***"))
            raise ConfigError(f"the local store's catalogue {path} fails SQLite's PRAGMA quick_check (corrupted): "
                              f"{found[:300]}; restore it from a backup (or move it away to start an empty store)")
        return db

    def __enter__(self) -> "LocalStore":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_indexes(self) -> None:
        with self._locked():
            self._ensure_schema()

    def _ensure_schema(self) -> None:
        """Under the lock: the tables and indexes, and what older stores lack."""
        fresh = not self._db.execute("SELECT name FROM sqlite_master WHERE name = 'sides'").fetchone()
        self._db.executescript(_SCHEMA + local_models.SCHEMA + local_records.SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(sides)")}
        if "model_version" not in columns:   # a store from before the registry: the column, from the rows
            self._db.executescript("BEGIN; ALTER TABLE sides ADD COLUMN model_version TEXT NOT NULL DEFAULT ''; "
                                   "UPDATE sides SET model_version = "
                                   "coalesce(json_extract(row, '$.model_version'), ''); COMMIT;")
        if "decision" not in {r[1] for r in self._db.execute("PRAGMA table_info(sides)")}:   # before decisions
            self._db.executescript("BEGIN; ALTER TABLE sides ADD COLUMN decision TEXT NOT NULL DEFAULT ''; "
                                   "UPDATE sides SET decision = coalesce(json_extract(row, '$.decision'), ''); COMMIT;")
        self._db.executescript(_SIDES_MODEL_VERSION)
        if fresh:   # a store written before the history existed: index the sides it holds, once
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for (doc,) in self._db.execute("SELECT doc FROM modules").fetchall():
                    module = json.loads(doc)
                    for s in rec.SIDES:
                        if module.get(s):
                            self._index_side(module["name"], s, module[s])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._identity = self._lost = None

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """The catalogue under the lock, checked to be the one at the path (StoreUnavailable if not)."""
        return self._locked()

    def transaction(self, what: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the catalogue (``what`` names it in a StoreUnavailable)."""
        return self._transaction(what)

    # ------------------------------------------------------------------ files
    def _path(self, image_id: str) -> str:
        return os.path.join(self.folder, "images", image_id[:2], image_id + ".png")

    def _write_file(self, image_id: str, data: bytes) -> None:
        path = self._path(image_id)
        if os.path.exists(path) and os.path.getsize(path) == len(data):
            return  # content-addressed: same id, same bytes
        make_leaf(os.path.dirname(path))
        write_durably(path, data)

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One SQLite write transaction under the lock; store-side failures become StoreUnavailable.
        The files are checked before and after: a commit into a catalogue removed meanwhile is not a
        write (StoreUnavailable, so the writer spools it and replays it into the store put back)."""
        try:
            with self._locked():
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                problem = self._problem()
                if problem is not None:
                    self._lose(problem)
                    raise StoreUnavailable(f"cannot {what}: {self._lost}")
        except (OSError, sqlite3.OperationalError) as err:
            try:
                self.check()      # the files removed under us mid-write: say that, not the error it caused
            except StoreUnavailable as gone:
                raise StoreUnavailable(f"cannot {what}: {gone}") from err
            if isinstance(err, FileNotFoundError):   # a removal under way (rm -rf empties the folder first)
                with self._lock:
                    self._lose(f"its files under {self.folder} were removed while in use ({err.filename or err})")
                raise StoreUnavailable(f"cannot {what}: {self._lost}") from err
            raise _unavailable(err, what) from err

    def _known(self, ids: list[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT id FROM images WHERE id IN ({','.join('?' * len(chunk))})"
            known.update(r[0] for r in self._db.execute(q, chunk))
        return known

    def put_images(self, images: dict[str, bytes], module: str = "", side: str = "", result_id: str = "") -> None:
        with self._transaction("write images"):
            # Files first (complete on disk), then the catalogue rows, in one transaction.
            new = [i for i in images if i not in self._known(list(images))]
            for i in new:
                self._write_file(i, images[i])
            for d in {os.path.dirname(self._path(i)) for i in new}:
                fsync_dir(d)
            self._db.executemany("INSERT OR IGNORE INTO images (id, length) VALUES (?, ?)",
                                 [(i, len(images[i])) for i in new])

    # ------------------------------------------------------------------ results
    def write(self, records: list[rec.Record]) -> None:
        images: dict[str, bytes] = {}
        for r in records:
            images.update(r.images)
        self.put_images(images)
        with self._transaction("write results"):
            for r in records:
                self._write_one(r)

    def _write_one(self, r: rec.Record) -> None:
        side = r.side
        # OR IGNORE: a replay finds the result there, maybe reviewed since (a result's copy keeps its review)
        self._db.execute("INSERT OR IGNORE INTO results (id, module, side, pulse_id, processed_at, doc) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (r.id, r.module, r.side_name, side["pulse_id"], side["processed_at"],
                          json.dumps({"_id": r.id, "module": r.module, "side": r.side_name, **side})))
        row = self._db.execute("SELECT doc FROM modules WHERE name = ?", (r.module,)).fetchone()
        now = rec.now_iso()
        if row is None:
            doc = {"name": r.module, "description": "", "uploaded_by": r.uploaded_by, "uploaded_at": now}
        else:
            doc = json.loads(row[0])
            if (doc.get(r.side_name) or {}).get("result_id") == r.id:
                return  # a replay: the side already shows this result (and maybe its review)
            if not supersedes(side, doc.get(r.side_name)):
                return  # an older acquisition finished after a newer one (another worker): the side stays
        doc[r.side_name] = side
        doc["last_updated_at"] = now
        self._db.execute("INSERT OR REPLACE INTO modules (name, doc, last_updated_at) VALUES (?, ?, ?)",
                         (r.module, json.dumps(doc), now))
        self._index_side(r.module, r.side_name, side)

    def _index_side(self, module: str, side_name: str, side: dict) -> None:
        """The side's history row, in the caller's transaction."""
        row = side_row(module, side_name, side)
        self._db.execute("INSERT OR REPLACE INTO sides (module, side, processed_at, score, is_anomalous, reviewed, "
                         "tag, model_version, decision, row) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (module, side_name, row["processed_at"], row["score"], int(row["is_anomalous"]),
                          int(row["reviewed"]), row["tag"], row["model_version"] or "", row["decision"] or "",
                          json.dumps(row)))

    def set_side(self, name: str, side_name: str, side: dict, expect_result_id: str) -> bool:
        with self._transaction("update the module"):
            row = self._db.execute("SELECT doc FROM modules WHERE name = ?", (name,)).fetchone()
            doc = json.loads(row[0]) if row else {}
            if (doc.get(side_name) or {}).get("result_id") != expect_result_id:
                return False
            doc[side_name] = side
            doc["last_updated_at"] = rec.now_iso()
            self._db.execute("UPDATE modules SET doc = ?, last_updated_at = ? WHERE name = ?",
                             (json.dumps(doc), doc["last_updated_at"], name))
            self._index_side(name, side_name, side)
            self._db.execute("UPDATE results SET doc = ? WHERE id = ?", (json.dumps(
                {"_id": expect_result_id, "module": name, "side": side_name, **side}), expect_result_id))
            return True

    def get_result(self, result_id: str) -> tuple[str, str, dict]:
        with self._locked():
            row = self._db.execute("SELECT module, side, doc FROM results WHERE id = ?", (result_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no result {result_id!r}")
        doc = json.loads(row[2])
        return row[0], row[1], {k: v for k, v in doc.items() if k not in ("_id", "module", "side")}

    def set_result(self, result_id: str, side: dict) -> None:
        with self._transaction("update a result") as db:
            row = db.execute("SELECT module, side FROM results WHERE id = ?", (result_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no result {result_id!r}")
            db.execute("UPDATE results SET doc = ? WHERE id = ?",
                       (json.dumps({"_id": result_id, "module": row[0], "side": row[1], **side}), result_id))

    def list_results(self, module: str, side_name: str, limit: int = 50) -> list[dict]:
        with self._locked():
            rows = self._db.execute("SELECT doc FROM results WHERE module = ? AND side = ? "
                                    "ORDER BY processed_at DESC LIMIT ?", (module, side_name, limit)).fetchall()
        return [side_row(module, side_name, json.loads(r[0])) for r in rows]

    def results_between(self, since: str, until: str, limit: int) -> list[dict]:
        with self._locked():
            rows = self._db.execute("SELECT module, side, doc FROM results WHERE processed_at >= ? AND "
                                    "processed_at < ? ORDER BY processed_at LIMIT ?", (since, until, limit)).fetchall()
        return [side_row(m, s, json.loads(d)) for m, s, d in rows]

    # ------------------------------------------------------------------ reading
    def list_modules(self, limit: int = 100, skip: int = 0) -> list[dict]:
        with self._locked():
            rows = self._db.execute("SELECT doc FROM modules ORDER BY last_updated_at DESC, name LIMIT ? OFFSET ?",
                                    (limit, skip)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def find_sides(self, query: HistoryQuery) -> tuple[list[dict], int]:
        where, args = [], []
        if query.since is not None:
            where.append("processed_at >= ?"); args.append(query.since)
        if query.until is not None:
            where.append("processed_at < ?"); args.append(query.until)
        if query.anomalous is not None:
            where.append("is_anomalous = ?"); args.append(int(query.anomalous))
        if query.reviewed is not None:
            where.append("reviewed = ?"); args.append(int(query.reviewed))
        if query.tag is not None:
            where.append("tag = ?"); args.append(query.tag)
        if query.model_version is not None:
            where.append("model_version = ?"); args.append(query.model_version)
        if query.decision is not None:
            where.append({"none": "decision = ''", "any": "decision != ''"}.get(query.decision, "decision = ?"))
            if query.decision not in ("none", "any"):
                args.append(query.decision)
        if query.module is not None:   # a name prefix as a range, so the primary key's index serves it
            where.append("module >= ? AND module < ?"); args += [query.module, query.module + "\U0010ffff"]
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        order = "DESC" if query.descending else "ASC"
        sql = (f"SELECT row FROM sides{cond} ORDER BY {_SIDE_COLUMNS[query.sort]} {order}, module {order}, "
               f"side {order} LIMIT ? OFFSET ?")
        with self._locked():
            rows = self._db.execute(sql, args + [query.limit, query.skip]).fetchall()
            total = self._db.execute(f"SELECT COUNT(*) FROM sides{cond}", args).fetchone()[0]
        return [json.loads(r[0]) for r in rows], total

    def get_module(self, name: str) -> dict:
        with self._locked():
            row = self._db.execute("SELECT doc FROM modules WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no module {name!r}")
        return json.loads(row[0])

    def get_image(self, image_id: str) -> bytes:
        with self._locked():
            row = self._db.execute("SELECT length FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no image {image_id}")
        try:
            with open(self._path(image_id), "rb") as f:
                data = f.read()
        except FileNotFoundError as err:
            raise NotFoundError(f"image {image_id} is catalogued but its file is missing") from err
        except OSError as err:
            if err.errno in (errno.EIO, errno.ENOSPC):
                raise _unavailable(err, "read an image") from err
            raise
        return data

    def count_results(self, module: str | None = None) -> int:
        with self._locked():
            if module is None:
                return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM results WHERE module = ?", (module,)).fetchone()[0]
