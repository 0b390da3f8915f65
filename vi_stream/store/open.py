"""Opening a store from what the operator named: one place that turns ``--store`` into a backend.

The daemon, the CLI and the tests all choose a store the same way, so the choice lives with the
stores, not in the daemon that happens to be one of its users. Nothing connects here: the store
returned connects in ``start()`` (or ``with store:``), so a daemon or command can be built, checked
and refused before any server is reached.
"""
from __future__ import annotations

from vi_stream.errors import ConfigError
from vi_stream.store.protocols import Store
from vi_stream.store.uris import redact


def open_store(spec: str | None) -> Store | None:
    """``mongodb://...`` -> MongoStore; ``off`` -> None; else a local store folder. Not connected yet.
    The default (MONGO_* environment, else the state directory) is resolved by
    :func:`vi_stream.service.config.build`, which hands the result here."""
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
