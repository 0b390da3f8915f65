"""The business steps behind the control interface's results and models (:mod:`vi_stream.processing.control`).

A route handler used to reach through the daemon into the store and the registry
(``api.model_registry().shelf.get_gate_set()``) and do the steps itself: correct a mask, run the
gate before a promotion, tell the daemon's followers that an alias moved. Here they are one call
each, answered in results (dicts, bytes), so the web layer only translates HTTP. Both desks find
the store when asked (a daemon with ``--store off`` answers StateError), never at construction.
"""
from __future__ import annotations

from typing import Any, Callable

from vi_stream.errors import NotFoundError
from vi_stream.registry import retrain
from vi_stream.registry.versions import Registry
from vi_stream.store import record as rec
from vi_stream.store import review
from vi_stream.store.protocols import HistoryQuery, Store, side_row, summary

REPORT_ROWS = 100_000    # at most this many results in one shift report


class ResultsDesk:
    """Results read back and reviewed; ``store`` gives the store or raises StateError, ``preview`` a live
    preview's PNG by id (None when it is not one)."""

    def __init__(self, store: Callable[[], Store], preview: Callable[[str], bytes | None]):
        self._store, self._preview = store, preview

    def modules(self, limit: int, skip: int) -> list[dict]:
        return [summary(m) for m in self._store().list_modules(limit, skip)]

    def module(self, name: str) -> dict:
        return self._store().get_module(name)

    def image(self, image_id: str) -> bytes:
        """A PNG by its id: a live preview, else the store's (NotFoundError)."""
        data = self._preview(image_id)
        return data if data is not None else self._store().get_image(image_id)

    def history(self, query: HistoryQuery) -> tuple[list[dict], int]:
        return self._store().find_sides(query)

    def correct_mask(self, name: str, side: str, tile: int, png: bytes, result_id: str | None) -> dict:
        return review.correct_mask(self._store(), name, side, tile, png, result_id)

    def verify(self, name: str, side: str, tile: int, verified: Any, result_id: str | None) -> dict:
        return review.verify(self._store(), name, side, tile, verified, result_id)

    def decide(self, name: str, side: str, verdict: Any, categories: Any, comment: Any, by: str,
               result_id: str | None) -> dict:
        return review.decide(self._store(), name, side, verdict, categories, comment, by, result_id)

    def acquisition(self, name: str, side: str, result_id: str | None) -> dict:
        """One acquisition of a side (None: the one shown) with its review, whether the module shows it,
        and the newer one it shows when it does not (from the same read of the module)."""
        doc, shown = review.located(self._store(), name, side, result_id)
        return {"module": name, "side_name": side, "side": doc, "shown": doc is shown,
                "newer": None if doc is shown else _newer(name, side, shown, doc["result_id"])}

    def newer(self, name: str, side: str, result_id: str | None) -> dict | None:
        """The history row of what the module's side shows, when that is not ``result_id``; else None."""
        return _newer(name, side, self._store().get_module(name).get(side) or {}, result_id)

    def acquisitions(self, name: str, side: str, limit: int) -> list[dict]:
        """Every acquisition of a side, newest first (the newest maybe not the one shown: see supersedes)."""
        rec.check_side(side)
        self._store().get_module(name)   # NotFoundError for an unknown module
        return self._store().list_results(name, side, limit)

    def report(self, since: str, until: str) -> tuple[list[dict], bool]:
        """Every result processed in [since, until), oldest first, and whether there were more than
        REPORT_ROWS."""
        rows = self._store().results_between(since, until, REPORT_ROWS + 1)
        return rows[:REPORT_ROWS], len(rows) > REPORT_ROWS

    def batches(self) -> list[dict]:
        return self._store().batches.list_batches()

    def batch(self, batch_id: str) -> dict:
        return self._store().batches.get_batch(batch_id)


def _newer(name: str, side: str, shown: dict, result_id: str | None) -> dict | None:
    """The history row of ``shown`` (the side the module shows, {} for none) when it is not ``result_id``."""
    if result_id is None or shown.get("result_id") in (None, result_id):
        return None
    return side_row(name, side, shown)


class ModelsDesk:
    """The model registry's versions and aliases; a promotion passes the gate, and every move of an alias
    tells ``moved`` (the daemon's followers switch now, not at their next poll)."""

    def __init__(self, registry: Callable[[], Registry], moved: Callable[[], None]):
        self._registry, self._moved = registry, moved

    def versions(self, name: str | None) -> list[dict]:
        return self._registry().versions(name)

    def version(self, name: str, version: str) -> dict:
        return self._registry().version(name, version)

    def register(self, data: bytes, name: str, version: str | None, by: str) -> dict:
        return self._registry().register(data, name, version, by=by, source="rest")

    def aliases(self) -> tuple[dict, list[dict]]:
        """The aliases and their last 50 changes."""
        reg = self._registry()
        return reg.aliases(), reg.changes(limit=50)

    def promote(self, alias: str, name: str, version: str, reason: Any, by: str, expected: str | None,
                force: bool) -> dict:
        """The gated promotion (:func:`vi_stream.registry.retrain.promote`), then the followers told."""
        change = retrain.promote(self._registry(), alias, name, version, reason, by, expected, force)
        self._moved()
        return change

    def rollback(self, alias: str, reason: Any, by: str, expected: str | None = None) -> dict:
        change = self._registry().rollback(alias, reason, by, expected)
        self._moved()
        return change

    def gate_set(self) -> dict:
        doc = self._registry().store.gate_sets.get_gate_set()
        if doc is None:
            raise NotFoundError("no gate set yet: verify defect and good tiles, then POST /api/gate")
        return doc

    def freeze_gate(self, by: str) -> dict:
        """Freeze the verified tiles as the gate's new set; its summary (without the tiles)."""
        doc = retrain.freeze_gate(self._registry().store, by)
        return {k: v for k, v in doc.items() if k != "tiles"}
