"""One reply for every answer of a vi_stream web app, errors included, whoever raised them.

The envelope is ``{"state": "ok"|"error", "status": <one of Control's STATES>, ...}``; an error adds
``error`` (the exception's class name, which the client raises again) and ``message``. A route, the
request guard, the credentials check and bottle itself (an unknown route, a wrong method, a fault
no route caught) all answer through here, so no answer lacks its ``error`` and none is an HTML page:
before, a 405 had no ``error`` (the client raised a bare ServiceError for the caller's mistake) and
the merge service answered 404 in HTML. The daemon's state comes from ``app.config[STATUS_KEY]``
(a callable), which :mod:`vi_stream.web.bodylimit` reads for its own 413/408 too.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

import bottle

from vi_stream.errors import (ConfigError, InputError, MethodNotAllowed, NotFoundError, Overloaded, PayloadTooLarge,
                              ServiceError, TooManyAttempts, ViStreamError)

log = logging.getLogger("vi_stream.rest")

STATUS_KEY = "vi_stream.status"
# bottle's own refusals, as the class of our tree the client maps them to
_BOTTLE_ERRORS: dict[int, type[ViStreamError]] = {400: ConfigError, 404: NotFoundError, 405: MethodNotAllowed,
                                                  413: PayloadTooLarge, 500: ServiceError}


def _status() -> str | None:
    status = bottle.request.app.config.get(STATUS_KEY)
    try:
        return status() if status is not None else None
    except Exception:    # pragma: no cover - the envelope's status is a plain read
        return None


def reply(status_code: int = 200, **fields: Any) -> str:
    """The JSON envelope with ``fields``, as the answer of the current request."""
    bottle.response.status = status_code
    bottle.response.content_type = "application/json"
    body = {"state": "ok" if status_code < 400 else "error", "status": _status(), **fields}
    return json.dumps(body, default=str)


def error(err: ViStreamError) -> str:
    """A refusal: its HTTP code, its class name as ``error``, ``reason`` of an InputError, Retry-After
    for the refusals worth retrying later."""
    extra = {"reason": err.reason} if isinstance(err, InputError) else {}
    if isinstance(err, Overloaded):
        bottle.response.set_header("Retry-After", "2")
    elif isinstance(err, TooManyAttempts):
        bottle.response.set_header("Retry-After", str(err.retry_after))
    return reply(err.status, message=str(err), error=type(err).__name__, **extra)


def fault(err: BaseException) -> str:
    """A bug, not the caller's input: logged with its traceback, answered 500 (and serving goes on)."""
    log.error("REST handler failed", exc_info=(type(err), err, err.__traceback__))
    return reply(500, message=f"internal error: {err!r}", error=ServiceError.__name__)


class Replies:
    """The bottle plugin that turns what a route raises into :func:`error` (ours) or :func:`fault`
    (anything else), so no route needs its own try/except."""

    name = "vi_stream_replies"
    api = 2

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        def answered(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except ViStreamError as err:
                return error(err)
            except bottle.HTTPResponse:
                raise                      # bottle's own answers (a redirect, an abort) go their way
            except Exception as err:
                return fault(err)
        return answered


def _bottle_error(res: bottle.HTTPError) -> str:
    """bottle's refusals (no route, wrong method, an exception past every plugin) in the envelope."""
    if res.status_code == 404:
        message = f"no route {bottle.request.method} {bottle.request.path[:200]}"
    elif res.status_code == 405:
        message = (f"method {bottle.request.method} not allowed on {bottle.request.path[:200]}"
                   f" (allowed: {res.headers.get('Allow', '')})")
    elif res.status_code >= 500:    # bottle wrote the traceback to wsgi.errors: the server logs it
        message = f"internal error: {res.exception!r}" if res.exception is not None else str(res.body)
    else:
        message = str(res.body)
    cls = _BOTTLE_ERRORS.get(res.status_code) or (ServiceError if res.status_code >= 500 else ViStreamError)
    return reply(res.status_code, message=message, error=cls.__name__)


def install(app: bottle.Bottle, status: Callable[[], str]) -> bottle.Bottle:
    """Make every answer of ``app`` the envelope: ``status`` fills its ``status`` field; route faults and
    bottle's own errors (404, 405, 500 ...) are JSON with ``error``."""
    app.config["autojson"] = False
    app.config[STATUS_KEY] = status
    app.default_error_handler = _bottle_error     # every code without a handler of its own
    app.install(Replies())
    return app
