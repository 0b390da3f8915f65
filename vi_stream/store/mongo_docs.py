"""Documents between JSON and MongoDB: image ids as ObjectId, ``*_at`` times as datetime."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

_ID_KEYS = ("src_id", "result_id")


def oid(hex_id: str):
    from bson import ObjectId
    return ObjectId(hex_id)


def to_mongo(doc: Any, key: str = "") -> Any:
    """Image ids -> ObjectId, ``*_at`` ISO strings -> datetime (what the ATLAS tools expect)."""
    if isinstance(doc, dict):
        return {k: to_mongo(v, k) for k, v in doc.items()}
    if isinstance(doc, list):
        return [to_mongo(v, key) for v in doc]
    if isinstance(doc, str) and (key in _ID_KEYS or key == "tiled_id"):
        return oid(doc)
    if isinstance(doc, str) and key.endswith("_at"):
        return datetime.fromisoformat(doc)
    return doc


def from_mongo(doc: Any) -> Any:
    """The reverse, for JSON: ObjectId -> 24-hex string, datetime -> ISO-8601 (UTC)."""
    from bson import ObjectId
    if isinstance(doc, dict):
        return {k: from_mongo(v) for k, v in doc.items() if k != "_id" or not isinstance(v, ObjectId)}
    if isinstance(doc, list):
        return [from_mongo(v) for v in doc]
    if isinstance(doc, ObjectId):
        return str(doc)
    if isinstance(doc, datetime):
        d = doc if doc.tzinfo else doc.replace(tzinfo=timezone.utc)  # pymongo returns naive UTC
        return d.isoformat(timespec="milliseconds")
    return doc
