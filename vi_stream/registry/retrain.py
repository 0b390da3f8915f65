"""Turning the operators' reviews into a better model: verified tiles, the promotion gate, retraining.

* **Verified tiles**: a tile an operator marked verified is *good* when its corrected
  mask is empty and a *defect* otherwise (the mask says where).
* **The promotion gate**: ``freeze_gate`` copies the verified tiles of the moment into a
  frozen set in the store (tile and mask PNGs, content-addressed, and a list of them);
  later reviews never change it. A version's recall on the set's defect tiles and its
  false alarms on the good ones are computed once and kept with the version. Promoting
  to a gated alias (``production``) is refused when the candidate does worse than the
  version there now on either, unless forced with a reason, which is recorded.
* **Retraining**: a candidate is fitted, streaming as ``vi_stream train`` does, on the
  production model's training images (a folder; its digest is compared with the one the
  model recorded) plus every tile verified good, with the production model's settings;
  it is registered as the next version, measured on the gate, and given an alias.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from itertools import chain
from typing import Callable, Iterator

import numpy as np

from vi_stream.store import record as rec
from vi_stream.errors import ConfigError, StateError
from vi_stream.io import files
from vi_stream.registry.versions import Registry, ref
from vi_stream.processing.settings import parse_version
from vi_stream.threads import lower_priority

log = logging.getLogger("vi_stream.retrain")

GATED_ALIASES = ("production",)


def verified_tiles(store, min_side: int = 16) -> Iterator[dict]:
    """Every verified tile in the store: ``{"module", "side", "tile", "image", "mask", "label"}``
    (image in the frame's own type, mask 0/255), module by module."""
    names, skip = [], 0
    while True:
        page = store.list_modules(500, skip)
        names += [m["name"] for m in page]
        if len(page) < 500:
            break
        skip += 500
    for name in sorted(set(names)):
        module = store.get_module(name)
        for side_name in rec.SIDES:
            side = module.get(side_name)
            flags = (side or {}).get("verified_masks") or []
            if not any(flags):
                continue
            frame = files.decode_image(store.get_image(side["original"]["full"]["src_id"]), f"{name} {side_name}")
            ox, sx, oy, sy = (side.get("roi") or [0, frame.shape[1], 0, frame.shape[0]])
            image = frame[oy:oy + sy, ox:ox + sx]
            mask = files.decode_image(store.get_image(side["corrected_mask"]["full"]["src_id"]),
                                      f"{name} {side_name} corrected mask")
            for i, ok in enumerate(flags):
                x, y, w, h = side["tiles"][i]
                if ok and min(w, h) >= min_side:
                    m = mask[y:y + h, x:x + w]
                    yield {"module": name, "side": side_name, "tile": i, "image": image[y:y + h, x:x + w],
                           "mask": m, "label": "defect" if m.any() else "good"}


# ---------------------------------------------------------------------- the promotion gate
def freeze_gate(store, by: str = "") -> dict:
    """Freeze the verified tiles of now into a new gate set; StateError without both kinds."""
    tiles, images = [], {}
    for t in verified_tiles(store):
        image_png, mask_png = rec.encode_png(np.ascontiguousarray(t["image"])), rec.encode_png(t["mask"])
        ids = rec.image_id(image_png), rec.image_id(mask_png)
        images.update(zip(ids, (image_png, mask_png)))
        tiles.append({k: t[k] for k in ("module", "side", "tile", "label")} | {"image_id": ids[0], "mask_id": ids[1]})
    counts = {k: sum(t["label"] == k for t in tiles) for k in ("defect", "good")}
    if not counts["defect"] or not counts["good"]:
        raise StateError(f"a gate needs verified defect tiles and verified good tiles; the store has "
                         f"{counts['defect']} and {counts['good']}: review more tiles first")
    store.put_images(images)
    digest = hashlib.sha256("".join(sorted(t["image_id"] + t["mask_id"] for t in tiles)).encode()).hexdigest()
    doc = {"id": f"gate-{rec.now_iso()[:19].replace(':', '')}-{digest[:8]}", "created_at": rec.now_iso(),
           "created_by": by or "unknown", "tiles": tiles, **{f"{k}_tiles": n for k, n in counts.items()}}
    store.gate_sets.put_gate_set(doc)
    return doc


def gate_metrics(registry: Registry, doc: dict, gate: dict, model=None) -> dict:
    """The version's recall on the gate's defect tiles and false-alarm rate on its good ones at
    its own threshold (computed once per gate set, then kept with the version)."""
    have = (doc.get("gate") or {}).get(gate["id"])
    if have:
        return have
    model = model or registry.load(doc)
    store = registry.store
    hits = {"defect": 0, "good": 0}
    for t in gate["tiles"]:
        tile = files.decode_image(store.get_image(t["image_id"]), f"gate tile {t['image_id']}")
        hits[t["label"]] += bool(model.score(tile).is_anomalous)
    metrics = {"recall": round(hits["defect"] / gate["defect_tiles"], 4),
               "false_alarm_rate": round(hits["good"] / gate["good_tiles"], 4),
               "defect_tiles": gate["defect_tiles"], "good_tiles": gate["good_tiles"]}
    registry.shelf.update_model_doc(doc["name"], doc["major"], doc["minor"],
                                    {"gate": {**(doc.get("gate") or {}), gate["id"]: metrics}})
    return metrics


def promote(registry: Registry, alias: str, name: str, version: str, reason: str, by: str = "",
            expected: str | None = None, force: bool = False) -> dict:
    """:meth:`Registry.promote` behind the gate: to a gated alias, a candidate that does worse than
    the version there now on the newest gate set is refused (StateError) unless ``force``."""
    check = None
    gate = registry.store.gate_sets.get_gate_set() if alias in GATED_ALIASES else None
    current = registry.aliases().get(alias)
    if alias in GATED_ALIASES:
        # The gate is judged against the version the alias shows now, so the move is made only if it
        # still shows that one when written (a compare-and-set): a concurrent move is a 409, never a
        # promotion past the gate. A caller's ``expected`` must name that same version.
        judged_at = ref(current) or ""
        if expected is not None and expected != judged_at:
            raise StateError(f"alias {alias!r} points at {judged_at or 'nothing'}, not {expected or 'nothing'}; "
                             "reload and decide again")
        expected = judged_at
    if gate is not None and current is not None:
        cand = gate_metrics(registry, registry.version(name, version), gate)
        prod = gate_metrics(registry, registry.version(current["name"], current["version"]), gate)
        worse = [f"recall {cand['recall']:.3f} < {prod['recall']:.3f}"] if cand["recall"] < prod["recall"] else []
        if cand["false_alarm_rate"] > prod["false_alarm_rate"]:
            worse.append(f"false alarms {cand['false_alarm_rate']:.3f} > {prod['false_alarm_rate']:.3f}")
        check = {"gate_set": gate["id"], "candidate": cand, "current": prod, "regressions": worse, "forced": False}
        if worse and not force:
            raise StateError(f"{name}@{version} does worse than {ref(current)} on gate {gate['id']}: "
                             f"{'; '.join(worse)}. Promote with force and a reason to override")
        check["forced"] = bool(worse)
    return registry.promote(alias, name, version, reason, by, expected, gate=check)


# ---------------------------------------------------------------------- retraining
def retrain(registry: Registry, images_dir: str, from_alias: str = "production", to_alias: str = "candidate",
            name: str | None = None, version: str | None = None, by: str = "",
            progress: Callable[[int], None] | None = None) -> dict:
    """Fit a candidate on the base model's training images plus the tiles verified good, register
    it, measure it on the newest gate set and point ``to_alias`` at it. Returns its version doc."""
    from vi_stream.model import AnomalyModel, ModelConfig, save
    from vi_stream.model.config import config_from_meta
    if to_alias in GATED_ALIASES:
        raise ConfigError(f"retrain gives its candidate a staging alias, not {to_alias!r}: promote it after")
    base_doc = registry.resolve(from_alias)
    base = registry.load(base_doc)
    config: ModelConfig = config_from_meta(base.meta)
    paths = files.list_images(images_dir)
    seen = {"folder": hashlib.sha256(), "tiles": 0, "skipped": 0}

    def folder() -> Iterator[np.ndarray]:
        for p in paths:
            img = files.read_image(p)
            seen["folder"].update(f"{img.shape}{img.dtype}".encode())
            seen["folder"].update(np.ascontiguousarray(img).tobytes())
            yield img

    def good_tiles() -> Iterator[np.ndarray]:
        for t in verified_tiles(registry.store):
            if t["label"] != "good":
                continue
            if min(t["image"].shape[:2]) < config.tile:
                seen["skipped"] += 1     # an edge tile smaller than the model's tile
                continue
            seen["tiles"] += 1
            yield np.ascontiguousarray(t["image"])

    model = AnomalyModel.fit(chain(folder(), good_tiles()), config, registry.device, progress,
                             calibrate_first=len(paths))   # the folder's images set the threshold, not tiles
    same = seen["folder"].hexdigest() == base.meta.get("training_digest")
    model.meta["retrained_from"] = {"version": ref(base_doc), "folder": os.path.abspath(images_dir),
                                    "folder_images": len(paths), "folder_is_base_training_set": same,
                                    "verified_good_tiles": seen["tiles"], "tiles_too_small": seen["skipped"]}
    if not same:
        log.warning("retrain: %s is not the training set %s was fitted on (its digest differs)", images_dir,
                    ref(base_doc))
    with tempfile.TemporaryDirectory(prefix="vi-retrain-") as tmp:
        path = save(model, os.path.join(tmp, "candidate.npz"))
        with open(path, "rb") as f:
            data = f.read()
    if version is not None:
        parse_version(version)
    doc = registry.register(data, name or base_doc["name"], version, by=by,
                            source=f"retrain of {ref(base_doc)} + {seen['tiles']} verified good tiles")
    gate = registry.store.gate_sets.get_gate_set()
    if gate is not None:
        doc = dict(doc, gate={gate["id"]: gate_metrics(registry, doc, gate, model)})
    if to_alias:
        registry.promote(to_alias, doc["name"], doc["version"], f"retrained from {ref(base_doc)}", by)
    return doc


class RetrainJob:
    """One retraining at a time in the daemon, in a low-priority thread (processing goes on)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.state = {"state": "idle"}

    def start(self, registry: Registry, images_dir: str, **kw) -> dict:
        files.list_images(images_dir)            # a bad folder is refused now, not in the thread
        with self._lock:
            if self.state["state"] == "running":
                raise StateError(f"a retraining is running already (since {self.state['started_at']})")
            self.state = {"state": "running", "started_at": rec.now_iso(), "images": images_dir,
                          "fitted": 0, **{k: v for k, v in kw.items() if k != "by"}}
        threading.Thread(target=self._run, args=(registry, images_dir, kw), name="retrain", daemon=True).start()
        return self.status()

    def _run(self, registry: Registry, images_dir: str, kw: dict) -> None:
        lower_priority(10)

        def progress(n: int) -> None:
            self.state["fitted"] += n
        try:
            doc = retrain(registry, images_dir, progress=progress, **kw)
            done = {"state": "done", "version": ref(doc), "gate": doc.get("gate")}
        except Exception as err:        # reported in the job's state, and logged
            log.exception("retraining failed")
            done = {"state": "failed", "error": f"{type(err).__name__}: {err}"}
        with self._lock:
            self.state = {**self.state, **done, "finished_at": rec.now_iso()}

    def status(self) -> dict:
        with self._lock:
            return dict(self.state)
