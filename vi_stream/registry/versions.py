"""The model registry: model files in the store, by content hash, named ``name@X.Y``, with aliases.

A version is a model file (checked by loading it, self-check included) plus what a site
asks of it later: backbone, taps, tile, threshold rule (false-alarm target and confidence), the
training set's digest and size, the calibration scores, who registered it and when.
Aliases (``production``, ``candidate``, any other word) point at versions, as MLflow's
``models:/name@production`` do; every move is logged (who, when, from, to, why). A move
may name the version the alias is ``expected`` to point at now, and is refused (409) when
it does not, so two operators cannot overwrite each other's promotion unknowingly.

The backends (:class:`~vi_stream.store.protocols.ModelShelf`) keep files and documents; the
rules are here, once, for both.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

from vi_stream.store import record as rec
from vi_stream.errors import ConfigError, InputError, ModelError, NotFoundError, StateError
from vi_stream.processing.settings import check_word, parse_version
from vi_stream.store.protocols import Store

_META_KEYS = ("model_id", "backbone", "layers", "tile", "overlap", "channels", "threshold", "threshold_rule",
              "training_digest", "good_images", "training_images", "calibration_images", "calibration_scores",
              "bank_patches", "created_at", "vi_stream_version", "self_check", "retrained_from")


def parse_ref(value: Any) -> tuple[str, str]:
    """``name@X.Y`` -> (name, "X.Y")."""
    name, at, version = value.partition("@") if isinstance(value, str) else ("", "", "")
    if not at:
        raise ConfigError(f"a model version is named NAME@X.Y (e.g. pads@1.0), got {value!r}")
    check_word("model name", name)
    parse_version(version)
    return name, version


def ref(doc: dict | None) -> str | None:
    return None if not doc else f"{doc['name']}@{doc['version']}"


def load_bytes(data: bytes, device: str = "cpu", where: str = "model file", allow_unchecked: bool = False):
    """The model in ``data`` (sizes checked, then loaded, digest and self-check verified), or
    InputError saying why it is not one. ``allow_unchecked``: a file without a digest loads."""
    from vi_stream.model import load
    if not data:
        raise InputError(f"{where} is empty")
    fd, path = tempfile.mkstemp(prefix=".vi-model-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return load(path, device, allow_unchecked)
        except ModelError as err:
            raise InputError(str(err).replace(path, where)) from err
    finally:
        os.unlink(path)


class Registry:
    """Versions and aliases on ``store.models`` (the shelf of a store that is started)."""

    def __init__(self, store: Store, device: str = "cpu"):
        # The shelf holds versions and aliases; the store beside it the results, images and gate sets
        # that retraining and the promotion gate read.
        self.store, self.shelf, self.device = store, store.models, device

    # ------------------------------------------------------------------ versions
    def register(self, data: bytes, name: str, version: str | None = None, by: str = "",
                 source: str = "", allow_unchecked: bool = False) -> dict:
        """Check ``data`` is a model whose digest and self-check pass, then store it as ``name@version``
        (default: the next minor version of ``name``, or 1.0). The same file again under the
        same version is a no-op; another file under a taken version is a StateError.
        ``allow_unchecked``: a file without a digest is stored too, marked ``unchecked`` (its
        registry hash binds it from then on, and loading it from the registry needs no flag)."""
        check_word("model name", name)
        if version is None:
            have = self.shelf.list_model_docs(name)
            major, minor = (have[0]["major"], have[0]["minor"] + 1) if have else (1, 0)
        else:
            major, minor = parse_version(version)
        model = load_bytes(data, self.device, f"{name}@{major}.{minor}", allow_unchecked)
        meta = {k: model.meta.get(k) for k in _META_KEYS if k in model.meta}
        meta["threshold"] = model.threshold
        doc = {"name": name, "version": f"{major}.{minor}", "major": major, "minor": minor,
               "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "registered_at": rec.now_iso(),
               "registered_by": by or "unknown", "source": source, "metadata": meta,
               "digest": model.file_digest, "unchecked": model.file_digest is None}
        return self.shelf.put_model(doc, data)

    def versions(self, name: str | None = None) -> list[dict]:
        aliases = self._aliases_by_ref()
        return [dict(d, aliases=aliases.get(ref(d), [])) for d in self.shelf.list_model_docs(name)]

    def version(self, name: str, version: str) -> dict:
        check_word("model name", name)
        doc = self.shelf.get_model_doc(name, *parse_version(version))
        return dict(doc, aliases=self._aliases_by_ref().get(ref(doc), []))

    def load(self, doc: dict):
        """The version's model: its stored file, checked against the registry's hash, then loaded
        (a version registered ``unchecked`` is bound by that hash alone)."""
        return load_bytes(self.file(doc), self.device, ref(doc), bool(doc.get("unchecked")))

    def file(self, doc: dict) -> bytes:
        data = self.shelf.get_model_file(doc["sha256"])
        if hashlib.sha256(data).hexdigest() != doc["sha256"]:
            raise ModelError(f"{ref(doc)}: the stored file does not match its hash {doc['sha256'][:12]} (altered)")
        return data

    # ------------------------------------------------------------------ aliases
    def aliases(self) -> dict[str, dict]:
        return self.shelf.get_aliases()

    def _aliases_by_ref(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for alias, target in self.shelf.get_aliases().items():
            out.setdefault(ref(target), []).append(alias)
        return out

    def resolve(self, alias: str) -> dict:
        """The version ``alias`` points at; NotFoundError if it points nowhere."""
        check_word("alias", alias)
        target = self.shelf.get_aliases().get(alias)
        if target is None:
            raise NotFoundError(f"alias {alias!r} points at no model; promote one first "
                                f"(vi_stream models promote NAME VERSION --alias {alias} --reason ...)")
        return self.shelf.get_model_doc(target["name"], *parse_version(target["version"]))

    def promote(self, alias: str, name: str, version: str, reason: str, by: str = "",
                expected: str | None = None, action: str = "promote", gate: dict | None = None) -> dict:
        """Point ``alias`` at ``name@version``; StateError (409) if ``expected`` is given and the
        alias points elsewhere now. Returns the change as logged (``changed``: False when the alias
        was there already). ``gate``: the promotion gate's verdict, logged with the change
        (:func:`vi_stream.registry.retrain.promote` checks it; this does not)."""
        check_word("alias", alias)
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError("give a reason: it is kept in the alias log (who, when, from, to, why)")
        if expected is not None and expected != "":
            parse_ref(expected)
        doc = self.version(name, version)     # NotFoundError for an unknown version
        current = self.shelf.get_aliases().get(alias)
        now_at = ref(current) or ""
        if expected is not None and now_at != expected:
            raise StateError(f"alias {alias!r} points at {now_at or 'nothing'}, not {expected or 'nothing'}; "
                             "reload and decide again")
        change = {"alias": alias, "action": action, "from": ref(current), "to": ref(doc),
                  "reason": reason.strip(), "by": by or "unknown", "at": rec.now_iso()}
        if gate is not None:
            change["gate"] = gate
        if now_at == ref(doc):
            return dict(change, changed=False)
        target = {"name": doc["name"], "version": doc["version"], "sha256": doc["sha256"],
                  "set_at": change["at"], "set_by": change["by"], "reason": change["reason"]}
        if not self.shelf.set_alias(alias, target, now_at, change):
            raise StateError(f"alias {alias!r} moved while this change was made; reload and decide again")
        return dict(change, changed=True)

    def rollback(self, alias: str, reason: str, by: str = "", expected: str | None = None) -> dict:
        """Point ``alias`` back at the version it showed before its latest promotion; with ``expected``
        (``name@X.Y``), only if the alias still points there (StateError otherwise, as a promotion)."""
        check_word("alias", alias)
        last = next((c for c in self.shelf.alias_changes(alias, 1000) if c.get("action") == "promote"), None)
        if last is None or not last.get("from"):
            raise StateError(f"alias {alias!r} has no earlier version to roll back to")
        current = ref(self.shelf.get_aliases().get(alias))
        if current == last["from"]:
            raise StateError(f"alias {alias!r} is back at {current} already (rolled back); promote to go elsewhere")
        if expected is not None and expected != current:
            raise StateError(f"alias {alias!r} points at {current or 'nothing'}, not {expected}: someone moved it "
                             "meanwhile; nothing rolled back")
        name, version = parse_ref(last["from"])
        return self.promote(alias, name, version, reason, by, expected=current or "", action="rollback")

    def changes(self, alias: str | None = None, limit: int = 100) -> list[dict]:
        if alias is not None:
            check_word("alias", alias)
        return self.shelf.alias_changes(alias, limit)
