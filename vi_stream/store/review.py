"""Review of stored results by a person: corrected masks and verified tiles, over any store.

Everything is checked before anything is written; new images are written before the
side points at them, and the side is replaced only if it still shows the result that
was reviewed, so a failure half-way or a re-imaged side leaves the document as it was.
"""
from __future__ import annotations

import threading
import weakref

import cv2
import numpy as np

from vi_stream.store import record as rec
from vi_stream.errors import InputError, NotFoundError, StateError
from vi_stream.store.protocols import Store

_locks: "weakref.WeakKeyDictionary[object, threading.Lock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _lock(store: Store) -> threading.Lock:
    """One lock per store object: two reviews of one side in this process do not overwrite each other."""
    with _locks_guard:
        lock = _locks.get(store)
        if lock is None:
            lock = _locks[store] = threading.Lock()
        return lock


def _side(store: Store, name: str, side_name: str, result_id: str | None) -> dict:
    if side_name not in rec.SIDES:
        raise InputError(f"side must be left or right, got {side_name!r}")
    side = store.get_module(name).get(side_name)
    if not side:
        raise NotFoundError(f"module {name!r} has no {side_name} side stored")
    if result_id is not None and side.get("result_id") != result_id:
        raise StateError(f"module {name!r} {side_name} now shows result {side.get('result_id')}, "
                         f"not {result_id}: reload it before reviewing")
    return side


def _replace(store: Store, name: str, side_name: str, old: dict, new: dict) -> dict:
    if not store.set_side(name, side_name, new, old["result_id"]):
        raise StateError(f"module {name!r} {side_name} changed during the review; reload it")
    return new


def correct_mask(store: Store, name: str, side_name: str, tile: int, png: bytes,
                 result_id: str | None = None) -> dict:
    """Replace tile ``tile`` of the corrected mask with ``png`` and mark it verified; the new side."""
    with _lock(store):
        side = _side(store, name, side_name, result_id)
        tile = rec.check_tile(side, tile)
        tile_mask = rec.decode_mask(png, side["tiles"][tile])
        current = cv2.imdecode(np.frombuffer(store.get_image(side["corrected_mask"]["full"]["src_id"]), np.uint8),
                               cv2.IMREAD_UNCHANGED)
        if current is None or current.shape != tuple(side["image_shape"]):
            raise StateError(f"the stored corrected mask of {name!r} {side_name} is unreadable")
        new, images = rec.correction(side, tile, tile_mask, current)
        store.put_images(images, name, side_name, side["result_id"])
        return _replace(store, name, side_name, side, new)


def verify(store: Store, name: str, side_name: str, tile: int, verified: bool = True,
           result_id: str | None = None) -> dict:
    """Mark tile ``tile`` as verified (the corrected mask is right as it is) or not; the new side."""
    if not isinstance(verified, bool):
        raise InputError(f"verified must be true or false, got {verified!r}")
    with _lock(store):
        side = _side(store, name, side_name, result_id)
        tile = rec.check_tile(side, tile)
        new = dict(side)
        flags = list(side["verified_masks"])
        flags[tile] = verified
        new["verified_masks"] = flags
        new["reviewed_at"] = rec.now_iso()
        return _replace(store, name, side_name, side, new)
