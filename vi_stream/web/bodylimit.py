"""Request bodies are read here, bounded, before the app sees them (WSGI middleware).

Each route has a size limit (:func:`rest_limits`: a model upload up to the registry's limit,
a corrected mask up to its own, every JSON route 64 KiB). A declared ``Content-Length`` over
the limit is answered 413 here, before a byte of the body is read. Otherwise the app gets
a body that is read when the route first reads it (after its credential check: a client
without them makes the server read nothing), into a spooled buffer (memory up to
``MEMORY_BYTES``, then one temporary file never larger than the route's limit); bottle
takes that as its parsed body and does not copy it again. A chunked body is decoded as it
arrives and cut off as soon as it passes the limit (:class:`PayloadTooLarge`, 413, raised
to the route, which answers it like any bad input). The server (:mod:`vi_stream.web.server`)
gives the read a deadline from the size allowed (:class:`BodyTimeout`, 408).

The 413 here uses the REST envelope: ``{"state": "error", "status": ..., "error":
"PayloadTooLarge", "message": ...}``; ``status`` comes from ``app.config["vi_stream.status"]``.
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
from http import HTTPStatus
from typing import Any, Callable, Iterable, NamedTuple

from vi_stream.errors import BodyTimeout, InputError, PayloadTooLarge

log = logging.getLogger("vi_stream.rest")

JSON_LIMIT = 64 * 1024        # every route not listed: JSON documents of a few fields
MEMORY_BYTES = 1024 * 1024    # a body is kept in memory up to this, then in a temporary file
DEADLINE_KEY = "vi_stream.body_deadline"   # environ: a callable(size) the server sets a read deadline with
HAS_BODY_KEY = "vi_stream.has_body"   # environ: True when the request has a body (the guard's 415 check:
                                      # a chunked body's Transfer-Encoding is gone from the environ by then)
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
    from vi_stream.web.routes.models import MAX_MODEL_BYTES
    from vi_stream.web.routes.reviews import MAX_MASK_BYTES
    return Limits((("POST", re.compile(r"/api/models"), MAX_MODEL_BYTES),
                   ("POST", re.compile(r"/api/modules/[^/]+/[^/]+/tiles/\d+/mask"), MAX_MASK_BYTES)))


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
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        raw = (environ.get("CONTENT_LENGTH") or "").strip()
        if chunked or raw:
            try:
                length = None if chunked else _declared(raw, limit)
            except InputError as err:
                self.refused += 1
                log.info("%s %s from %s refused: %s", method, path[:100], environ.get("REMOTE_ADDR"), err)
                return self._error(start_response, err)
            body = _Body(environ, limit, length)
            environ[HAS_BODY_KEY] = chunked or bool(length)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input"] = body
            environ["bottle.request.body"] = body       # bottle reads this instead of spooling its own copy
        return self.app(environ, start_response)

    def _error(self, start_response: Callable, err: InputError) -> list[bytes]:
        status = getattr(getattr(self.app, "config", {}), "get", lambda *_: None)("vi_stream.status")
        doc = {"state": "error", **({"status": _safe(status)} if status else {}), "error": type(err).__name__,
               "message": str(err), "reason": err.reason}
        body = json.dumps(doc).encode()
        start_response(f"{err.status} {HTTPStatus(err.status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _declared(raw: str, limit: int) -> int:
    if not raw.isdigit():
        raise InputError(f"Content-Length {raw[:40]!r} is not a number", "bad_length")
    length = int(raw)
    if length > limit:
        raise PayloadTooLarge(f"the body ({length} bytes) is over this route's limit of {limit} bytes", "too_large")
    return length


class _Body:
    """The request body, read (bounded, with its deadline) at its first use, not before: a route
    that checks credentials first reads nothing for a client without them. ``length`` None: chunked."""

    def __init__(self, environ: dict, limit: int, length: int | None):
        self._environ, self._limit, self._length = environ, limit, length
        self._src, self._buf = environ["wsgi.input"], None

    def _load(self):
        if self._buf is None:
            deadline = self._environ.get(DEADLINE_KEY)
            if deadline is not None:
                deadline(self._limit if self._length is None else self._length)
            src, buf = self._src, tempfile.SpooledTemporaryFile(MEMORY_BYTES)
            try:
                n = _copy_chunked(src, buf, self._limit) if self._length is None else _copy(src, buf, self._length)
            except TimeoutError as err:
                buf.close()
                raise BodyTimeout(str(err), "late") from None
            except BaseException:
                buf.close()
                raise
            buf.seek(0)
            self._environ["CONTENT_LENGTH"] = str(n)
            self._buf = buf
        return self._buf

    def read(self, n: int = -1) -> bytes:
        return self._load().read(n)

    def readline(self, n: int = -1) -> bytes:
        return self._load().readline(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._buf.seek(pos, whence) if self._buf is not None else 0

    def tell(self) -> int:
        return self._buf.tell() if self._buf is not None else 0

    def close(self) -> None:
        if self._buf is not None:
            self._buf.close()


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
            raise InputError(f"the body ended after {length - left} of the {length} bytes declared", "short_body")
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
            raise InputError("malformed chunked body", "bad_chunked") from None
        if n == 0:
            while src.readline(1024) not in (b"\r\n", b"\n", b""):   # trailers
                pass
            return total
        total += n
        if total > limit:
            raise PayloadTooLarge(f"the chunked body passed this route's limit of {limit} bytes", "too_large")
        while n:
            part = src.read(min(_BLOCK, n))
            if not part:
                raise InputError("the chunked body ended in a chunk", "bad_chunked")
            dst.write(part)
            n -= len(part)
        if src.readline(3) not in (b"\r\n", b"\n"):
            raise InputError("malformed chunked body", "bad_chunked")
