"""REST control plane (bottle): routes only, delegating to the daemon's control interface.

Envelope as psen_processing: ``{"state": "ok"|"error", "status": "stopped"|"processing", ...}``,
but errors use real HTTP codes (400 bad input, 401 bad token, 404 unknown, 409 wrong
state, 503 overloaded or store down, 500 server fault) with a ``message`` and the
exception class as ``error``. Served by a threaded WSGI server with a bounded number of
connections and a timeout on idle ones, so neither a slow nor a flooding client can
block the control plane.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import socketserver
import threading
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

from .control import Control
from .errors import AuthError, ConfigError, InputError, ViStreamError
from . import openapi, prometheus, review
from .storage import summary

log = logging.getLogger("vi_stream.rest")

_IMAGE_ID = re.compile(r"[0-9a-fA-F]{24}")
MAX_MASK_BYTES = 64 * 1024 * 1024


MAX_JSON_BYTES = 1024 * 1024


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


def make_app(api: Control, token: str | None = None) -> bottle.Bottle:
    app = bottle.Bottle()
    app.config["autojson"] = False
    registry = prometheus.registry_for(api.statistics)

    def reply(status_code: int = 200, **fields: Any) -> str:
        bottle.response.status = status_code
        bottle.response.content_type = "application/json"
        body = {"state": "ok" if status_code < 400 else "error", "status": api.status(), **fields}
        return json.dumps(body, default=str)

    def error(err: ViStreamError) -> str:
        extra = {"reason": err.reason} if isinstance(err, InputError) else {}
        return reply(err.status, message=str(err), error=type(err).__name__, **extra)

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
                if mutating and token:
                    got = bottle.request.get_header("Authorization", "")
                    if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
                        return error(AuthError("missing or wrong token (Authorization: Bearer <token>)"))
                try:
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
        return reply()

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
        return reply(statistics=api.statistics())

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
        raw = bottle.request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            v = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not lo <= v <= hi:
            raise ConfigError(f"{name} must be {lo}-{hi}, got {v}")
        return v

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
        data = api.results_store().get_image(image_id.lower())
        bottle.response.content_type = "image/png"
        bottle.response.set_header("Cache-Control", "public, max-age=31536000, immutable")  # content-addressed
        bottle.response.set_header("ETag", f'"{image_id.lower()}"')
        return data

    @app.post("/api/modules/<name>/<side>/tiles/<tile:int>/mask")
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


MAX_CONNECTIONS = 64        # concurrent connections; more are answered 503 at once
IDLE_TIMEOUT = 10.0         # seconds a connection may sit without sending its request


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``max_connections`` at once: one beyond that gets a
    503 written straight to its socket (no thread), so a flood cannot starve the control plane."""

    daemon_threads = True
    allow_reuse_address = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                body = json.dumps({"state": "error", "error": "Overloaded",
                                   "message": "too many connections, try again"}).encode()
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT   # socket timeout: an idle or trickling client is dropped, its thread freed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def serve(app: bottle.Bottle, host: str = "127.0.0.1", port: int = 0,
          max_connections: int = MAX_CONNECTIONS) -> tuple[WSGIServer, threading.Thread]:
    """Start a threaded WSGI server; returns (server, thread). ``server.server_port`` is the port."""
    server_class = type("_Server", (_ThreadingWSGIServer,), {"max_connections": max_connections})
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="vi-rest", daemon=True)
    thread.start()
    return server, thread
