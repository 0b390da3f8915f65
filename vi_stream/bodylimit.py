"""Request bodies are read here, bounded, before the app sees them (WSGI middleware).

Each route has a size limit (:func:`rest_limits`: a model upload up to the registry's limit,
a corrected mask up to its own, every JSON route 64 KiB). A declared ``Content-Length`` over
the limit is answered 413 before a byte of the body is read; a chunked body is decoded
while it arrives and cut off with a 413 as soon as it passes the limit. What is accepted
is held in a spooled buffer (memory up to ``MEMORY_BYTES``, then one temporary file never
larger than the route's limit) and handed to the app as its input, and to bottle as its
parsed body, so bottle does not copy it again. The server
(:mod:`vi_stream.server`) gives the read a deadline from the size allowed.

Errors use the REST envelope: ``{"state": "error", "status": ..., "error": "PayloadTooLarge",
"message": ...}``; ``status`` comes from ``app.config["vi_stream.status"]`` when the app sets it.
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
from typing import Any, Callable, Iterable, NamedTuple

log = logging.getLogger("vi_stream.rest")

JSON_LIMIT = 64 * 1024        # every route not listed: JSON documents of a few fields
MEMORY_BYTES = 1024 * 1024    # a body is kept in memory up to this, then in a temporary file
DEADLINE_KEY = "vi_stream.body_deadline"   # environ: a callable(size) the server sets a read deadline with
_BLOCK = 64 * 1024


class Limits(NamedTuple):
    routes: tuple[tuple[str, re.Pattern, int], ...]   # (method, path pattern, bytes)
    default: int = JSON_LIMIT

    def limit(self, method: str, path: str) -> int:
        for m, pattern, size in self.routes:
            if m == method and pattern.fullmatch(path):
                return size
        return self.default


def rest_limits() -> Limits:
    """The REST routes' limits: the large bodies are the model uploads and the corrected masks."""
    from .rest import MAX_MASK_BYTES
    from .rest_models import MAX_MODEL_BYTES
    return Limits((("POST", re.compile(r"/api/models"), MAX_MODEL_BYTES),
                   ("POST", re.compile(r"/api/modules/[^/]+/[^/]+/tiles/\d+/mask"), MAX_MASK_BYTES)))


class _Refused(Exception):
    def __init__(self, code: str, error: str, message: str):
        super().__init__(message)
        self.code, self.error = code, error


class BodyLimit:
    """The middleware: ``BodyLimit(app, limits)`` is a WSGI app."""

    def __init__(self, app: Callable, limits: Limits):
        self.app, self.limits = app, limits
        self.refused = 0

    def __getattr__(self, name: str) -> Any:    # the wrapped app's attributes (bottle's config, routes)
        return getattr(self.app, name)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        limit = self.limits.limit(method, path)
        try:
            body = self._read(environ, limit)
        except _Refused as err:
            self.refused += 1
            log.info("%s %s from %s refused: %s", method, path[:100], environ.get("REMOTE_ADDR"), err)
            return self._error(environ, start_response, err)
        except TimeoutError as err:
            log.debug("%s %s from %s: %s", method, path[:100], environ.get("REMOTE_ADDR"), err)
            return self._error(environ, start_response, _Refused("408 Request Timeout", "Late", str(err)))
        if body is not None:
            environ["wsgi.input"] = body
            environ["bottle.request.body"] = body       # bottle reads this instead of spooling its own copy
        return self.app(environ, start_response)

    def _read(self, environ: dict, limit: int):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        raw = (environ.get("CONTENT_LENGTH") or "").strip()
        if not chunked and not raw:
            return None
        if not chunked:
            if not raw.isdigit():
                raise _Refused("400 Bad Request", "InputError", f"Content-Length {raw[:40]!r} is not a number")
            length = int(raw)
            if length > limit:
                raise _Refused("413 Payload Too Large", "PayloadTooLarge",
                               f"the body ({length} bytes) is over this route's limit of {limit} bytes")
        deadline = environ.get(DEADLINE_KEY)
        if deadline is not None:
            deadline(limit if chunked else length)
        src, buf = environ["wsgi.input"], tempfile.SpooledTemporaryFile(MEMORY_BYTES)
        try:
            n = _copy_chunked(src, buf, limit) if chunked else _copy(src, buf, length)
        except BaseException:
            buf.close()
            raise
        buf.seek(0)
        environ["CONTENT_LENGTH"] = str(n)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return buf

    def _error(self, environ: dict, start_response: Callable, err: _Refused) -> list[bytes]:
        status = getattr(getattr(self.app, "config", {}), "get", lambda *_: None)("vi_stream.status")
        doc = {"state": "error", **({"status": _safe(status)} if status else {}), "error": err.error,
               "message": str(err)}
        body = json.dumps(doc).encode()
        start_response(err.code, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _safe(status: Callable[[], str]) -> str | None:
    try:
        return status()
    except Exception:    # pragma: no cover - the envelope's status is a plain read
        return None


def _copy(src, dst, length: int) -> int:
    left = length
    while left:
        part = src.read(min(_BLOCK, left))
        if not part:
            raise _Refused("400 Bad Request", "InputError", f"the body ended after {length - left} of the "
                                                             f"{length} bytes declared")
        dst.write(part)
        left -= len(part)
    return length


def _copy_chunked(src, dst, limit: int) -> int:
    """Decode a chunked body into ``dst``; 413 as soon as it passes ``limit``."""
    total = 0
    while True:
        line = src.readline(1024)
        size = line.split(b";", 1)[0].strip()
        try:
            n = int(size, 16)
        except ValueError:
            raise _Refused("400 Bad Request", "InputError", "malformed chunked body") from None
        if n == 0:
            while src.readline(1024) not in (b"\r\n", b"\n", b""):   # trailers
                pass
            return total
        total += n
        if total > limit:
            raise _Refused("413 Payload Too Large", "PayloadTooLarge",
                           f"the chunked body passed this route's limit of {limit} bytes")
        while n:
            part = src.read(min(_BLOCK, n))
            if not part:
                raise _Refused("400 Bad Request", "InputError", "the chunked body ended in a chunk")
            dst.write(part)
            n -= len(part)
        if src.readline(3) not in (b"\r\n", b"\n"):
            raise _Refused("400 Bad Request", "InputError", "malformed chunked body")
