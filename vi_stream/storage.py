"""Where results last: the store interface, its shared review logic, and store selection.

Two backends keep the same logical schema (the ATLAS ITk visual-inspection app's):
:class:`~vi_stream.io.mongo_store.MongoStore` (MongoDB + GridFS) and
:class:`~vi_stream.io.local_store.LocalStore` (SQLite catalogue + PNG files), the
embedded default. Both take batches of :class:`~vi_stream.record.Record` and must make
``write`` idempotent: a replayed record changes nothing that is already there, and
a side that already shows the record keeps its review (verified tiles, corrections).

A backend raises :class:`~vi_stream.errors.StoreUnavailable` when it cannot be written
*now* (server down, network cut, disk full); the writer spools and retries. Any other
exception is a fault of this record, which is retried a few times and then set aside.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from . import record as rec
from .config import redact
from .errors import ConfigError, InputError, NotFoundError, StateError


class Store:
    """Backends implement the primitives; the review logic (validate, paste, re-encode) is shared."""

    description = "store"

    # ---- primitives (backends)
    def ensure_indexes(self) -> None:
        raise NotImplementedError

    def write(self, records: list[rec.Record]) -> None:
        raise NotImplementedError

    def list_modules(self, limit: int = 100, skip: int = 0) -> list[dict]:
        raise NotImplementedError

    def get_module(self, name: str) -> dict:
        raise NotImplementedError

    def get_image(self, image_id: str) -> bytes:
        raise NotImplementedError

    def count_results(self, module: str | None = None) -> int:
        raise NotImplementedError

    def _put_images(self, images: dict[str, bytes], module: str, side: str, result_id: str) -> None:
        raise NotImplementedError

    def _set_side(self, name: str, side_name: str, side: dict, expect_result_id: str) -> bool:
        """Replace the side if it still shows ``expect_result_id``; False if it changed meanwhile."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    # ---- review (shared)
    _review_lock = threading.Lock()

    def _side(self, name: str, side_name: str, result_id: str | None) -> dict:
        if side_name not in rec.SIDES:
            raise InputError(f"side must be left or right, got {side_name!r}")
        module = self.get_module(name)
        side = module.get(side_name)
        if not side:
            raise NotFoundError(f"module {name!r} has no {side_name} side stored")
        if result_id is not None and side.get("result_id") != result_id:
            raise StateError(f"module {name!r} {side_name} now shows result {side.get('result_id')}, "
                             f"not {result_id}: reload it before reviewing")
        return side

    def _write_review(self, name: str, side_name: str, old: dict, new: dict) -> dict:
        if not self._set_side(name, side_name, new, old["result_id"]):
            raise StateError(f"module {name!r} {side_name} changed during the review; reload it")
        return new

    def correct_mask(self, name: str, side_name: str, tile: int, png: bytes, result_id: str | None = None) -> dict:
        """Replace tile ``tile`` of the corrected mask with ``png`` and mark it verified.

        Everything is checked before anything is written; new images are written before the
        document points at them, so a failure half-way leaves the document as it was.
        """
        with self._review_lock:
            side = self._side(name, side_name, result_id)
            tile = rec.check_tile(side, tile)
            tile_mask = rec.decode_mask(png, side["tiles"][tile])
            current = cv2.imdecode(np.frombuffer(self.get_image(side["corrected_mask"]["full"]["src_id"]), np.uint8),
                                   cv2.IMREAD_UNCHANGED)
            if current is None or current.shape != tuple(side["image_shape"]):
                raise StateError(f"the stored corrected mask of {name!r} {side_name} is unreadable")
            new, images = rec.correction(side, tile, tile_mask, current)
            self._put_images(images, name, side_name, side["result_id"])
            return self._write_review(name, side_name, side, new)

    def verify(self, name: str, side_name: str, tile: int, verified: bool = True,
               result_id: str | None = None) -> dict:
        """Mark tile ``tile`` as verified (the corrected mask is right as it is) or not."""
        if not isinstance(verified, bool):
            raise InputError(f"verified must be true or false, got {verified!r}")
        with self._review_lock:
            side = self._side(name, side_name, result_id)
            tile = rec.check_tile(side, tile)
            new = dict(side)
            flags = list(side["verified_masks"])
            flags[tile] = verified
            new["verified_masks"] = flags
            new["reviewed_at"] = rec.now_iso()
            return self._write_review(name, side_name, side, new)


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


def open_store(spec: str) -> Store | None:
    """``mongodb://...`` -> MongoStore; ``off`` -> None; anything else is a local store folder.

    The default (MONGO_* environment, else the state directory) is resolved by
    :func:`vi_stream.config.build`, which hands the result here.
    """
    if not spec:
        raise ConfigError("no store named: give a mongodb:// URI, a folder or 'off' (config.build fills in the default)")
    if spec == "off":
        return None
    if spec.startswith(("mongodb://", "mongodb+srv://")):
        from .io.mongo_store import MongoStore
        return MongoStore(spec)
    if "://" in spec:
        raise ConfigError(f"store must be a mongodb:// URI, a folder or 'off', got {redact(spec)!r}")
    from .io.local_store import LocalStore
    return LocalStore(spec)
