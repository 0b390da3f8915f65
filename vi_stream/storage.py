"""What a results store is: small protocols, one implementation per backend.

Two backends keep the same logical schema (the ATLAS ITk visual-inspection app's):
:class:`~vi_stream.io.mongo_store.MongoStore` (MongoDB + GridFS) and
:class:`~vi_stream.io.local_store.LocalStore` (SQLite catalogue + PNG files), the
embedded default. The daemon picks one (:func:`vi_stream.daemon.open_store`); review
(:mod:`vi_stream.review`) and the store writer are written against these protocols only.

A backend's ``write`` is idempotent: a replayed record changes nothing that is already
there, and a side that already shows the record keeps its review (verified tiles,
corrections). It raises :class:`~vi_stream.errors.StoreUnavailable` when it cannot be
written *now* (server down, network cut, disk full); the writer spools and retries.
Any other exception is a fault of this record, retried a few times and then set aside.
A store connects in ``start()`` (or ``with store:``) and lets go in ``close()``.
"""
from __future__ import annotations

from typing import Protocol

from . import record as rec


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
        """Replace the side if it still shows ``expect_result_id``; False if it changed meanwhile."""


class Store(Lifetime, Images, Results, Protocol):
    """A results store: what the daemon, the writer and review need."""


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
