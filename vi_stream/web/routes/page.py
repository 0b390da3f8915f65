"""The operator's page: its files, its login (a session cookie and a CSRF token), the live feed (events
and trends) and the API's own description (``/openapi.json``, ``/docs``)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time

import bottle

from vi_stream.errors import NotFoundError
from vi_stream.processing.control import Control
from vi_stream.web import openapi
from vi_stream.web.auth import COOKIE, Sessions
from vi_stream.web.body import json_object
from vi_stream.web.params import tab_id, time_range
from vi_stream.web.replies import reply

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
_STATIC_NAME = re.compile(r"[a-z0-9_-]+\.(js|css|html|svg|png)")
_STATIC_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                 "html": "text/html; charset=utf-8", "svg": "image/svg+xml", "png": "image/png"}


def static_file(name: str) -> bytes:
    """One of the page's files, revalidated by its ETag (an upgrade shows at once)."""
    match = _STATIC_NAME.fullmatch(name)
    path = os.path.join(WEB_DIR, name)
    if not match or not os.path.isfile(path):
        raise NotFoundError(f"no file {name[:80]!r} in the page's assets")
    with open(path, "rb") as f:
        data = f.read()
    etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
    bottle.response.set_header("ETag", etag)
    bottle.response.set_header("Cache-Control", "no-cache")
    bottle.response.content_type = _STATIC_TYPES[match.group(1)]
    if bottle.request.get_header("If-None-Match") == etag:
        bottle.response.status = 304
        return b""
    return data


def add(app: bottle.Bottle, api: Control, sessions: Sessions) -> None:
    @app.get("/api/events")
    def events():
        tab = tab_id(bottle.request.query.get("tab"))          # 400 for a bad one, before a stream is taken
        stream = api.live_feed().events(bottle.request.environ.get("REMOTE_ADDR"), tab)   # 503 beyond a cap (the
        # peer's own address: remote_addr would believe a client's X-Forwarded-For)
        bottle.response.content_type = "text/event-stream; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        bottle.response.set_header("X-Accel-Buffering", "no")   # a reverse proxy must not buffer it
        return stream

    @app.get("/api/trends")
    def trends():
        since, until = (None if t is None else t.timestamp() for t in time_range(bottle.request.query, "trend"))
        if since is not None and until is None:
            until = time.time() + 10.0          # up to now, the open bin included
        if until is not None and since is None:
            since = until - 3600.0
        return reply(**api.live_feed().trend_bins(since, until))

    @app.get("/api/session")
    def session():
        entry = sessions.session(bottle.request.get_cookie(COOKIE))
        return reply(auth_required=sessions.required, logged_in=entry is not None, csrf=entry and entry[0],
                     operator=entry and entry[1], named_operators=bool(sessions.operators))

    @app.post("/api/login", credentials=True)   # takes the token itself; wrong ones count towards the rate limit
    def login():
        sid, csrf, operator = sessions.login(json_object('send {"token": "..."}').get("token"))
        bottle.response.set_header("Set-Cookie", f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; "
                                                 f"Max-Age={int(sessions.ttl)}")
        return reply(auth_required=True, logged_in=True, csrf=csrf, operator=operator)

    @app.post("/api/logout", open=True)   # ending a session needs no credentials
    def logout():
        sessions.logout(bottle.request.get_cookie(COOKIE))
        bottle.response.set_header("Set-Cookie", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
        return reply(auth_required=sessions.required, logged_in=False, csrf=None)

    @app.get("/")
    def index():
        return static_file("index.html")

    @app.get("/static/<name>")
    def static(name):
        return static_file(name)

    doc = openapi.spec()

    @app.get("/openapi.json")
    def openapi_json():
        bottle.response.content_type = "application/json"
        return json.dumps(doc)

    @app.get("/docs")
    def docs():
        bottle.response.content_type = "text/html; charset=utf-8"
        return openapi.docs_page(doc)
