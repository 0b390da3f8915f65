"""Store specs as they may be shown: in logs, in GET /config, in error messages."""
from __future__ import annotations

from urllib.parse import urlsplit


def redact(uri: str) -> str:
    """A store spec fit for logs and /config: the password of a URI replaced by ***."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
