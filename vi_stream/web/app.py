"""REST control plane (bottle): the app, wired from one route module per resource and three plugins.

Envelope as psen_processing: ``{"state": "ok"|"error", "status": "stopped"|"processing", ...}``,
but errors use real HTTP codes (400 bad input, 401 bad token, 404 unknown, 405 wrong method, 409
wrong state, 503 overloaded or store down, 500 server fault) with a ``message`` and the exception
class as ``error`` (:mod:`vi_stream.web.replies`). Served by a threaded WSGI server with a bounded
number of connections and deadlines (:mod:`vi_stream.web.server`), so neither a slow nor a flooding
client can block the control plane.

Every request passes, outermost first: :class:`vi_stream.web.guard.RequestGuard` (Host, Origin,
Content-Type, token guessing), :class:`vi_stream.web.replies.Replies` (what a route raises becomes
the error reply) and :class:`vi_stream.web.auth.CredentialsCheck` (every changing route needs the
token or a session with its CSRF token). Route modules only say what a route does.
"""
from __future__ import annotations

import bottle

from vi_stream.processing.control import Control
from vi_stream.web import replies
from vi_stream.web.auth import CredentialsCheck, Sessions
from vi_stream.web.guard import FailureLimiter, HostPolicy, RequestGuard
from vi_stream.web.routes import batches, control, models, page, report, results, reviews


def make_app(api: Control, token: str | None = None, rest_host: str = "127.0.0.1",
             allowed_hosts: tuple[str, ...] = (), operators: dict[str, bytes] | None = None) -> bottle.Bottle:
    """The REST app over ``api``; ``token`` (unnamed) and ``operators`` (name -> token digest,
    :mod:`vi_stream.web.operators`) guard the changing routes, ``rest_host`` and ``allowed_hosts`` are
    the names a request's Host may carry."""
    app = bottle.Bottle()
    guard = RequestGuard(HostPolicy(rest_host, allowed_hosts), FailureLimiter(), replies.error)
    app.install(guard)                       # installed first: outermost, refuses before anything runs
    replies.install(app, api.status)
    sessions = Sessions(token, operators=operators)
    app.install(CredentialsCheck(sessions))  # innermost: what it raises, Replies answers
    control.add(app, api, guard.counts)
    results.add(app, api)
    reviews.add(app, api)
    report.add(app, api)
    models.add(app, api)
    batches.add(app, api)
    page.add(app, api, sessions)
    return app
