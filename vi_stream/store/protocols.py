"""What a results store is: small protocols, one implementation per backend.

Two backends keep the same logical schema (the ATLAS ITk visual-inspection app's):
:class:`~vi_stream.store.mongo.MongoStore` (MongoDB + GridFS) and
:class:`~vi_stream.store.local.LocalStore` (SQLite catalogue + PNG files), the
embedded default. The daemon picks one (:func:`vi_stream.store.opening.open_store`); review
(:mod:`vi_stream.store.review`) and the store writer are written against these protocols only.

A backend's ``write`` is idempotent: a replayed record changes nothing that is already
there, and a side that already shows the record keeps its review (verified tiles,
corrections). It raises :class:`~vi_stream.errors.StoreUnavailable` when it cannot be
written *now* (server down, network cut, disk full); the writer spools and retries.
Any other exception is a fault of this record, retried a few times and then set aside.
A store connects in ``start()`` (or ``with store:``) and lets go in ``close()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vi_stream.store import record as rec


class Lifetime(Protocol):
    description: str

    def start(self) -> "Lifetime":
        """Connect (create folders, open the catalogue or the client) and ensure indexes; returns self."""

    def close(self) -> None: ...


class Images(Protocol):
    def get_image(self, image_id: str) -> bytes:
        """PNG bytes; NotFoundError for an unknown id."""

    def put_images(self, images: dict[str, bytes], module: str = "", side: str = "", result_id: str = "") -> None:
        """Store content-addressed images (an id already there is skipped)."""


class Results(Protocol):
    def write(self, records: list[rec.Record]) -> None:
        """Idempotent: results, their images and the module's side they now show."""

    def list_modules(self, limit: int = 100, skip: int = 0) -> list[dict]: ...

    def get_module(self, name: str) -> dict:
        """The module document; NotFoundError if unknown."""

    def count_results(self, module: str | None = None) -> int: ...

    def set_side(self, name: str, side_name: str, side: dict, expect_result_id: str) -> bool:
        """Replace the side, and the stored copy of the result it shows, if it still shows
        ``expect_result_id``; False if it changed meanwhile."""

    def get_result(self, result_id: str) -> tuple[str, str, dict]:
        """One acquisition as kept in ``results``: (module, side name, the side as stored for it, with its
        review when it was reviewed after it stopped being shown); NotFoundError."""

    def set_result(self, result_id: str, side: dict) -> None:
        """Replace the stored copy of one result (its review: an acquisition no longer shown keeps one)."""

    def list_results(self, module: str, side_name: str, limit: int = 50) -> list[dict]:
        """Every acquisition of a module side, newest processed first, as :func:`side_row` rows (indexed)."""

    def results_between(self, since: str, until: str, limit: int) -> list[dict]:
        """Every result processed in [since, until), oldest first, as :func:`side_row` rows (indexed)."""

    def find_sides(self, query: "HistoryQuery") -> tuple[list[dict], int]:
        """One page of module sides (:func:`side_row` rows) matching ``query``, and how many match in all.
        Answered from indexes on the sides' rows, never by reading the module documents."""


class Store(Lifetime, Images, Results, Protocol):
    """A results store: what the daemon, the writer and review need, and beside the results the other
    families the backend keeps on the same connection, each a small object behind its own protocol
    (declared below), so a user is handed only the family it needs."""

    models: "ModelShelf"
    gate_sets: "GateSets"
    shadows: "ShadowRecords"
    batches: "BatchRecords"
    trends: "TrendPoints"


class ModelShelf(Protocol):
    """Where the model registry (:mod:`vi_stream.registry`) keeps its files, versions and aliases.
    Documents are JSON-ready dicts; the backend owns only atomicity, the registry the rules."""

    def put_model(self, doc: dict, data: bytes) -> dict:
        """Store a version (``doc`` names ``name``, ``major``, ``minor``, ``sha256``) and its file, file
        first; the stored doc. The same name@version again: the stored doc if it has the same
        sha256, else StateError."""

    def get_model_doc(self, name: str, major: int, minor: int) -> dict:
        """NotFoundError if unknown."""

    def list_model_docs(self, name: str | None = None) -> list[dict]:
        """Every version (of ``name``), by name, then newest version first."""

    def get_model_file(self, sha256: str) -> bytes: ...

    def get_aliases(self) -> dict[str, dict]:
        """alias -> {"name", "version", "set_at", "set_by", "reason"}."""

    def set_alias(self, alias: str, target: dict, expected: str | None, change: dict) -> bool:
        """Point ``alias`` at ``target`` and append ``change`` to its log, atomically, if the alias
        points at ``expected`` now (``name@X.Y``; ``""`` for no target yet; None: do not check).
        False, and nothing changed, otherwise."""

    def alias_changes(self, alias: str | None = None, limit: int = 100) -> list[dict]:
        """The alias log, newest first."""

    def update_model_doc(self, name: str, major: int, minor: int, fields: dict) -> dict:
        """Set top-level ``fields`` of a version's document (never its file or hash); the new document."""


class GateSets(Protocol):
    """Frozen promotion-gate sets (:mod:`vi_stream.registry.retrain`)."""

    def put_gate_set(self, doc: dict) -> None:
        """Keep a frozen promotion-gate set (``doc["id"]`` is new; the set never changes after)."""

    def get_gate_set(self, gate_id: str | None = None) -> dict | None:
        """The gate set ``gate_id``, or the newest one; None when there is none."""


class ShadowRecords(Protocol):
    """Shadow-mode comparisons kept for a person to look at (:mod:`vi_stream.registry.shadow`)."""

    def put_shadow(self, doc: dict) -> None:
        """Keep one shadow-mode comparison (a candidate's verdict beside production's)."""

    def list_shadow(self, limit: int = 50) -> list[dict]:
        """Shadow-mode comparisons, newest first."""


class BatchRecords(Protocol):
    """``vi_stream batch`` runs, one record each (inputs, state, progress, jobs, log tails)."""

    def put_batch(self, doc: dict) -> None: ...

    def update_batch(self, batch_id: str, fields: dict) -> None:
        """Set top-level ``fields``; NotFoundError for an unknown batch."""

    def get_batch(self, batch_id: str) -> dict: ...

    def list_batches(self, limit: int = 50) -> list[dict]:
        """Newest first."""


class TrendPoints(Protocol):
    """The monitor's trends over time (:mod:`vi_stream.web.trends`), so they survive a restart: one
    point per closed 10 s bin (``kind`` "bin") and per judged drift chunk (``kind`` "drift"), each with
    ``source`` (the daemon that wrote it) and ``t`` (epoch seconds)."""

    def put_trend_points(self, points: list[dict]) -> None:
        """Keep points; one already there (same source, t and kind) is replaced (a retry changes nothing)."""

    def trend_points(self, source: str | None, since: float, until: float, limit: int = 100_000) -> list[dict]:
        """Points with ``since <= t < until`` (of ``source``; None: every daemon's), oldest first."""

    def prune_trend_points(self, before: float) -> int:
        """Forget points older than ``before`` (bounded retention); how many went."""


def summary(module: dict) -> dict:
    """A module as listed by ``GET /api/modules``: who/when, and per side score, verdict and review progress."""
    out = {k: module.get(k) for k in ("name", "description", "uploaded_by", "uploaded_at", "last_updated_at")}
    for s in rec.SIDES:
        side = module.get(s)
        out[s] = None if not side else {
            "result_id": side.get("result_id"), "score": side.get("score"),
            "is_anomalous": side.get("is_anomalous"), "defects": len(side.get("defects") or []),
            "tile_count": side.get("tile_count"), "verified": sum(bool(v) for v in side.get("verified_masks", [])),
            "thumbnail_id": (side.get("original") or {}).get("thumbnail", {}).get("src_id"),
            "tag": side.get("tag"), "acquired_at": side.get("acquired_at"),
        }
    return out


def supersedes(new: dict, current: dict | None) -> bool:
    """Whether a result may replace the side ``current`` shows: only a newer acquisition does
    (time of acquisition, then pulse id). With several workers an older frame can finish after
    a newer one; its result is kept in ``results`` but the side keeps the newer image."""
    if not current:
        return True
    def key(side: dict) -> tuple[str, int]:
        return str(side.get("acquired_at") or ""), int(side.get("pulse_id") or -1)
    return key(new) >= key(current)


def side_row(module: str, side_name: str, side: dict) -> dict:
    """What the history lists and filters on for one module side (kept beside the module document,
    indexed, updated with it)."""
    verified = sum(bool(v) for v in side.get("verified_masks") or [])
    tiles = int(side.get("tile_count") or 0)
    return {"module": module, "side": side_name, "result_id": side.get("result_id"),
            "processed_at": side.get("processed_at") or "", "acquired_at": side.get("acquired_at"),
            "score": float(side.get("score") or 0.0), "is_anomalous": bool(side.get("is_anomalous")),
            "tag": side.get("tag") or "", "tile_count": tiles, "verified": verified,
            "reviewed": tiles > 0 and verified == tiles, "defects": len(side.get("defects") or []),
            "model_id": side.get("model_id"), "model_version": side.get("model_version"),
            "threshold": side.get("threshold"),
            "thumbnail_id": (side.get("original") or {}).get("thumbnail", {}).get("src_id"),
            **decision_fields(side)}


def decision_fields(side: dict) -> dict:
    """A side's decision (:func:`vi_stream.store.review.decide`) as the history lists it: the verdict
    (pass, fail or rework; None while undecided), who, when, the defect categories and the comment."""
    d = side.get("decision") or {}
    return {"decision": d.get("verdict"), "decided_by": d.get("by"), "decided_at": d.get("at"),
            "categories": list(d.get("categories") or []), "comment": d.get("comment") or ""}


SORTS = ("processed_at", "score", "module")
DECISIONS = ("none", "any", "pass", "fail", "rework")   # HistoryQuery.decision: undecided, decided, or which
MAX_PAGE = 500


@dataclass(frozen=True)
class HistoryQuery:
    """Filters, order and page of a history read (``GET /api/history``; the web layer parses the query
    string into one: :func:`vi_stream.web.params.history_query`)."""

    since: str | None = None          # processed_at >= (ISO-8601)
    until: str | None = None          # processed_at < (ISO-8601)
    anomalous: bool | None = None     # verdict
    reviewed: bool | None = None      # every tile verified (True) or not (False)
    tag: str | None = None            # exact
    module: str | None = None         # name starts with
    model_version: str | None = None  # exact: name@X.Y
    decision: str | None = None       # one of DECISIONS ("none": no decision yet, the review queue's)
    sort: str = "processed_at"
    descending: bool = True
    limit: int = 50
    skip: int = 0
