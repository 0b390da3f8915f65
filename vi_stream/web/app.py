"""REST control plane (bottle): routes only, delegating to the daemon's control interface.

Envelope as psen_processing: ``{"state": "ok"|"error", "status": "stopped"|"processing", ...}``,
but errors use real HTTP codes (400 bad input, 401 bad token, 404 unknown, 409 wrong
state, 503 overloaded or store down, 500 server fault) with a ``message`` and the
exception class as ``error``. Served by a threaded WSGI server with a bounded number of
connections and a timeout on idle ones, so neither a slow nor a flooding client can
block the control plane.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Any, Callable

import bottle

from vi_stream.web.auth import COOKIE, CSRF_HEADER, Sessions
from vi_stream.processing.control import Control
from vi_stream.errors import ConfigError, InputError, NotFoundError, Overloaded, TooManyAttempts, ViStreamError
from vi_stream.web import openapi
from vi_stream.web import prometheus
from vi_stream.web import models_routes as rest_models
from vi_stream.store import review
from vi_stream.web.guard import FailureLimiter, HostPolicy, RequestGuard
from vi_stream.store.protocols import summary
from vi_stream.web.params import history_query, int_param

log = logging.getLogger("vi_stream.rest")

_IMAGE_ID = re.compile(r"[0-9a-fA-F]{24}")
MAX_MASK_BYTES = 64 * 1024 * 1024


MAX_JSON_BYTES = 1024 * 1024
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_NAME = re.compile(r"[a-z0-9_-]+\.(js|css|html|svg|png)")
_STATIC_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                 "html": "text/html; charset=utf-8", "svg": "image/svg+xml", "png": "image/png"}


def read_json(raw: bytes) -> Any:
    """A request body as JSON, or ConfigError: not JSON, not UTF-8, NaN/Infinity (not JSON either),
    or nested deeper than the parser's stack (a RecursionError would otherwise be a 500)."""
    def refuse(constant: str) -> Any:
        raise ConfigError(f"request body is not valid JSON: {constant} is not a JSON value")
    try:
        return json.loads(raw, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"request body is not valid JSON: {str(err)[:200] or type(err).__name__}") from None


def make_app(api: Control, token: str | None = None, rest_host: str = "127.0.0.1",
             allowed_hosts: tuple[str, ...] = ()) -> bottle.Bottle:
    """The routes; every request passes :class:`vi_stream.web.guard.RequestGuard` first (Host, Origin,
    Content-Type, token guessing), whether a token is set or not."""
    app = bottle.Bottle()
    app.config["autojson"] = False
    app.config["vi_stream.status"] = api.status   # the envelope of the body limits' errors (bodylimit)
    registry = prometheus.registry_for(api.statistics)
    sessions = Sessions(token)

    def reply(status_code: int = 200, **fields: Any) -> str:
        bottle.response.status = status_code
        bottle.response.content_type = "application/json"
        body = {"state": "ok" if status_code < 400 else "error", "status": api.status(), **fields}
        return json.dumps(body, default=str)

    def error(err: ViStreamError) -> str:
        extra = {"reason": err.reason} if isinstance(err, InputError) else {}
        if isinstance(err, Overloaded):
            bottle.response.set_header("Retry-After", "2")
        elif isinstance(err, TooManyAttempts):
            bottle.response.set_header("Retry-After", str(err.retry_after))
        return reply(err.status, message=str(err), error=type(err).__name__, **extra)

    guard = RequestGuard(HostPolicy(rest_host, allowed_hosts), FailureLimiter(), error)
    app.install(guard)

    def body() -> Any:
        raw = bottle.request.body.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise ConfigError(f"request body larger than {MAX_JSON_BYTES} bytes")
        if not raw.strip():
            return {}
        return read_json(raw)

    def body_object(hint: str) -> dict:
        data = body()
        if not isinstance(data, dict):
            raise ConfigError(hint)
        return data

    def guarded(mutating: bool) -> Callable:
        def deco(fn: Callable) -> Callable:
            def wrapper(*a: Any, **k: Any) -> str:
                try:
                    if mutating:
                        sessions.check(bottle.request.get_header("Authorization", ""),
                                       bottle.request.get_cookie(COOKIE), bottle.request.get_header(CSRF_HEADER))
                    return fn(*a, **k)
                except ViStreamError as err:
                    return error(err)
                except Exception as err:  # a bug, not user input: say so, keep serving
                    log.exception("REST handler failed")
                    return reply(500, message=f"internal error: {err!r}")
            return wrapper
        return deco

    @app.post("/start")
    @guarded(True)
    def start():
        api.start_processing()
        return reply()

    @app.post("/stop")
    @guarded(True)
    def stop():
        api.stop_processing()
        return reply()

    @app.get("/status")
    @guarded(False)
    def status():
        return reply(store=api.store_state())

    @app.get("/roi")
    @guarded(False)
    def get_roi():
        return reply(roi=api.get_roi())

    @app.post("/roi")
    @guarded(True)
    def set_roi():
        data = body()
        roi = data.get("roi", data) if isinstance(data, dict) else data
        if isinstance(roi, dict):
            raise ConfigError("send the ROI as [offset_x, size_x, offset_y, size_y] or {\"roi\": [...]}")
        return reply(roi=api.set_roi(roi))

    @app.get("/statistics")
    @guarded(False)
    def statistics():
        return reply(statistics={**api.statistics(), "rest_refused": guard.counts()})

    @app.get("/metrics")
    @guarded(False)
    def metrics():
        bottle.response.content_type = prometheus.CONTENT_TYPE
        return prometheus.exposition(registry)

    @app.get("/config")
    @guarded(False)
    def get_config():
        return reply(config=api.get_config())

    @app.post("/config")
    @guarded(True)
    def set_config():
        return reply(config=api.set_config(body_object("config must be a JSON object of option: value")))

    @app.get("/model")
    @guarded(False)
    def model():
        return reply(model=api.model_info())

    @app.post("/model/reload")
    @guarded(True)
    def reload_model():
        data = body()
        path = data.get("path") if isinstance(data, dict) else None
        name = data.get("name") if isinstance(data, dict) else None
        if (path is not None and not isinstance(path, str)) or (name is not None and not isinstance(name, str)):
            raise ConfigError("path and name must be strings")
        return reply(model=api.reload_model(path, name))

    # ---------------------------------------------------------------- results: read-back and review
    def query_int(name: str, default: int, lo: int, hi: int) -> int:
        return int_param(name, bottle.request.query.get(name), default, lo, hi)

    @app.get("/api/modules")
    @guarded(False)
    def list_modules():
        limit, skip = query_int("limit", 100, 1, 1000), query_int("skip", 0, 0, 10**9)
        mods = api.results_store().list_modules(limit, skip)
        return reply(modules=[summary(m) for m in mods], limit=limit, skip=skip)

    @app.get("/api/modules/<name>")
    @guarded(False)
    def get_module(name):
        return reply(module=api.results_store().get_module(name))

    @app.get("/api/images/<image_id>")
    @guarded(False)
    def get_image(image_id):
        if not _IMAGE_ID.fullmatch(image_id):
            raise ConfigError(f"an image id is 24 hex digits, got {image_id[:40]!r}")
        data = api.live_feed().images.get(image_id.lower())   # a live preview, else the store's
        if data is None:
            data = api.results_store().get_image(image_id.lower())
        bottle.response.content_type = "image/png"
        bottle.response.set_header("Cache-Control", "public, max-age=31536000, immutable")  # content-addressed
        bottle.response.set_header("ETag", f'"{image_id.lower()}"')
        return data

    @app.post("/api/modules/<name>/<side>/tiles/<tile:int>/mask", raw_body=True)   # a PNG, not JSON
    @guarded(True)
    def correct_mask(name, side, tile):
        ctype = (bottle.request.content_type or "").split(";")[0].strip().lower()
        if ctype not in ("image/png", "application/octet-stream", ""):
            raise InputError(f"send the corrected mask as image/png, not {ctype}")
        png = bottle.request.body.read(MAX_MASK_BYTES + 1)
        if len(png) > MAX_MASK_BYTES:
            raise InputError(f"the corrected mask is larger than {MAX_MASK_BYTES // 2**20} MB")
        side_doc = review.correct_mask(api.results_store(), name, side, tile, png, bottle.request.query.get("result_id"))
        return reply(side=side_doc)

    @app.post("/api/modules/<name>/<side>/tiles/<tile:int>/verify")
    @guarded(True)
    def verify(name, side, tile):
        data = body_object('send {"verified": true|false}')
        side_doc = review.verify(api.results_store(), name, side, tile, data.get("verified", True),
                                 data.get("result_id"))
        return reply(side=side_doc)

    @app.get("/api/history")
    @guarded(False)
    def history():
        query = history_query(dict(bottle.request.query.decode().allitems()))
        rows, total = api.results_store().find_sides(query)
        return reply(sides=rows, total=total, limit=query.limit, skip=query.skip)

    rest_models.add_routes(app, api, guarded, reply, body_object)

    # ---------------------------------------------------------------- the operator's page
    @app.get("/api/events")
    @guarded(False)
    def events():
        live = api.live_feed()
        listener = live.hub.subscribe(bottle.request.environ.get("REMOTE_ADDR"))   # 503 beyond a cap (the peer's
        # own address: remote_addr would believe a client's X-Forwarded-For)
        bottle.response.content_type = "text/event-stream; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        bottle.response.set_header("X-Accel-Buffering", "no")   # a reverse proxy must not buffer it
        return live.hub.stream(listener, live.snapshot())

    @app.get("/api/trends")
    @guarded(False)
    def trends():
        live = api.live_feed()
        return reply(bin_s=live.trends.bin_s, bins=live.trends.summary())

    @app.get("/api/session")
    @guarded(False)
    def session():
        csrf = sessions.csrf(bottle.request.get_cookie(COOKIE))
        return reply(auth_required=sessions.required, logged_in=csrf is not None, csrf=csrf)

    @app.post("/api/login", credentials=True)   # wrong tokens here count towards the rate limit
    @guarded(False)
    def login():
        sid, csrf = sessions.login(body_object('send {"token": "..."}').get("token"))
        bottle.response.set_header("Set-Cookie", f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; "
                                                 f"Max-Age={int(sessions.ttl)}")
        return reply(auth_required=True, logged_in=True, csrf=csrf)

    @app.post("/api/logout")
    @guarded(False)
    def logout():
        sessions.logout(bottle.request.get_cookie(COOKIE))
        bottle.response.set_header("Set-Cookie", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
        return reply(auth_required=sessions.required, logged_in=False, csrf=None)

    def static_file(name: str) -> bytes:
        match = _STATIC_NAME.fullmatch(name)
        path = os.path.join(WEB_DIR, name)
        if not match or not os.path.isfile(path):
            raise NotFoundError(f"no file {name[:80]!r} in the page's assets")
        with open(path, "rb") as f:
            data = f.read()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        bottle.response.set_header("ETag", etag)
        bottle.response.set_header("Cache-Control", "no-cache")   # revalidated: an upgrade shows at once
        bottle.response.content_type = _STATIC_TYPES[match.group(1)]
        if bottle.request.get_header("If-None-Match") == etag:
            bottle.response.status = 304
            return b""
        return data

    @app.get("/")
    @guarded(False)
    def index():
        return static_file("index.html")

    @app.get("/static/<name>")
    @guarded(False)
    def static(name):
        return static_file(name)

    doc = openapi.spec()

    @app.get("/openapi.json")
    @guarded(False)
    def openapi_json():
        bottle.response.content_type = "application/json"
        return json.dumps(doc)

    @app.get("/docs")
    @guarded(False)
    def docs():
        bottle.response.content_type = "text/html; charset=utf-8"
        return openapi.docs_page(doc)

    @app.error(404)
    def not_found(_err):
        bottle.response.content_type = "application/json"
        return json.dumps({"state": "error", "status": api.status(), "error": "NotFoundError",
                           "message": f"no route {bottle.request.method} {bottle.request.path}"})

    @app.error(405)
    def bad_method(_err):
        bottle.response.content_type = "application/json"
        return json.dumps({"state": "error", "status": api.status(),
                           "message": f"method {bottle.request.method} not allowed on {bottle.request.path}"})

    return app
