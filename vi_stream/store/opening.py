"""Opening a store from how it is named: ``mongodb://...``, a local store folder, or ``off``.

Apart from the daemon (:mod:`vi_stream.service.daemon` re-exports it) so that a command that only
reads a store (``vi_stream models list``, ``batch list``) opens one without importing the daemon and,
through it, the scorer (torch) and numba: such a command starts in a fraction of a second
(bench/startup.py). The backends import only when named.
"""
from __future__ import annotations

from vi_stream.errors import ConfigError
from vi_stream.store.protocols import Store
from vi_stream.store.uris import redact


def open_store(spec: str | None) -> Store | None:
    """The daemon's choice of store: ``mongodb://...`` -> MongoStore; ``off`` -> None; else a local store
    folder. Not connected yet (``start()`` does that). The default (MONGO_* environment, else the
    state directory) is resolved by :func:`vi_stream.service.config.build`, which hands the result here."""
    if not spec:
        raise ConfigError("no store named: give a mongodb:// URI, a folder or 'off' (config.build fills in the default)")
    if spec == "off":
        return None
    if spec.startswith(("mongodb://", "mongodb+srv://")):
        from vi_stream.store.mongo import MongoStore
        return MongoStore(spec)
    if "://" in spec:
        raise ConfigError(f"store must be a mongodb:// URI, a folder or 'off', got {redact(spec)!r}")
    from vi_stream.store.local import LocalStore
    return LocalStore(spec)
