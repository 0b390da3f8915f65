"""Review of stored results by a person: corrected masks, verified tiles and a decision, over any store.

A review applies to the acquisition it was made on (its ``result_id``), whether or not the module's
side still shows it: a side re-imaged while someone reviewed it keeps the new image, and the review
is kept with the older result in ``results``, where it stays reachable. Everything is checked before
anything is written; new images are written before the side points at them.

A decision is an operator's verdict on one side's acquisition: ``pass``, ``fail`` or ``rework``,
with defect categories (:data:`CATEGORIES`), a comment and the operator's name; a changed decision
keeps the one it replaces in ``decision_history``.
"""
from __future__ import annotations

import threading
import weakref

import cv2
import numpy as np

from vi_stream.store import record as rec
from vi_stream.errors import InputError, NotFoundError, StateError
from vi_stream.store.protocols import Store

VERDICTS = ("pass", "fail", "rework")
CATEGORIES = ("scratch", "particle", "stain", "pad damage", "corrosion", "misalignment", "other")
MAX_COMMENT = 2000

_locks: "weakref.WeakKeyDictionary[object, threading.Lock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _lock(store: Store) -> threading.Lock:
    """One lock per store object: two reviews of one side in this process do not overwrite each other."""
    with _locks_guard:
        lock = _locks.get(store)
        if lock is None:
            lock = _locks[store] = threading.Lock()
        return lock


def acquisition(store: Store, name: str, side_name: str, result_id: str | None) -> tuple[dict, bool]:
    """The side of acquisition ``result_id`` (None: the one the module shows), and whether the module's
    side shows it (its review is then the module document's)."""
    side, shown = located(store, name, side_name, result_id)
    return side, side is shown


def located(store: Store, name: str, side_name: str, result_id: str | None) -> tuple[dict, dict]:
    """The side of acquisition ``result_id`` (None: the one the module shows) and the side the module
    shows ({} for none), from one read of the module: the first is the second when it shows it."""
    rec.check_side(side_name)
    if result_id is not None and not isinstance(result_id, str):
        raise InputError("result_id must be a result's id (a string)")
    shown = store.get_module(name).get(side_name) or {}
    if result_id is None or shown.get("result_id") == result_id:
        if not shown:
            raise NotFoundError(f"module {name!r} has no {side_name} side stored")
        return shown, shown
    module, where, side = store.get_result(result_id)
    if (module, where) != (name, side_name):
        raise NotFoundError(f"result {result_id} is not an acquisition of module {name!r} {side_name}")
    return side, shown


def _save(store: Store, name: str, side_name: str, old: dict, new: dict, shown: bool) -> dict:
    """Keep ``new`` for the acquisition ``old`` was: on the module's side while it shows it, else (also when
    it was re-imaged a moment ago) on the result's own copy."""
    if not (shown and store.set_side(name, side_name, new, old["result_id"])):
        store.set_result(old["result_id"], new)
    return new


def correct_mask(store: Store, name: str, side_name: str, tile: int, png: bytes,
                 result_id: str | None = None) -> dict:
    """Replace tile ``tile`` of the corrected mask with ``png`` and mark it verified; the new side."""
    with _lock(store):
        side, shown = acquisition(store, name, side_name, result_id)
        tile = rec.check_tile(side, tile)
        tile_mask = rec.decode_mask(png, side["tiles"][tile])
        current = cv2.imdecode(np.frombuffer(store.get_image(side["corrected_mask"]["full"]["src_id"]), np.uint8),
                               cv2.IMREAD_UNCHANGED)
        if current is None or current.shape != tuple(side["image_shape"]):
            raise StateError(f"the stored corrected mask of {name!r} {side_name} is unreadable")
        new, images = rec.correction(side, tile, tile_mask, current)
        store.put_images(images, name, side_name, side["result_id"])
        return _save(store, name, side_name, side, new, shown)


def verify(store: Store, name: str, side_name: str, tile: int, verified: bool = True,
           result_id: str | None = None) -> dict:
    """Mark tile ``tile`` as verified (the corrected mask is right as it is) or not; the new side."""
    if not isinstance(verified, bool):
        raise InputError(f"verified must be true or false, got {verified!r}")
    with _lock(store):
        side, shown = acquisition(store, name, side_name, result_id)
        tile = rec.check_tile(side, tile)
        new = dict(side)
        flags = list(side["verified_masks"])
        flags[tile] = verified
        new["verified_masks"] = flags
        new["reviewed_at"] = rec.now_iso()
        return _save(store, name, side_name, side, new, shown)


def check_decision(verdict: object, categories: object, comment: object) -> tuple[str, list[str], str]:
    """The decision's fields, checked (InputError naming the first bad one)."""
    if verdict not in VERDICTS:
        raise InputError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    categories = [] if categories is None else categories
    if not isinstance(categories, list) or any(c not in CATEGORIES for c in categories):
        raise InputError(f"categories must be a list of {', '.join(CATEGORIES)}")
    comment = "" if comment is None else comment
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise InputError(f"comment must be text of at most {MAX_COMMENT} characters")
    return verdict, sorted(set(categories), key=CATEGORIES.index), comment.strip()


def decide(store: Store, name: str, side_name: str, verdict: object, categories: object, comment: object,
           by: str, result_id: str | None = None) -> dict:
    """Record an operator's decision on acquisition ``result_id`` of a side (None: the one shown); the new side."""
    verdict, categories, comment = check_decision(verdict, categories, comment)
    with _lock(store):
        side, shown = acquisition(store, name, side_name, result_id)
        new = dict(side)
        if side.get("decision"):
            new["decision_history"] = list(side.get("decision_history") or []) + [side["decision"]]
        new["decision"] = {"verdict": verdict, "categories": categories, "comment": comment, "by": by,
                           "at": rec.now_iso()}
        return _save(store, name, side_name, side, new, shown)
