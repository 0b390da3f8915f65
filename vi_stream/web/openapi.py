"""The REST API described as OpenAPI 3 (served at ``/openapi.json``, readable at ``/docs``).

A test keeps it in step with the routes, and schemathesis fuzzes the daemon against it.

Longer than 300 lines: it is one table of every route and its schemas, read top to bottom; split by
resource, what a reader compares (parameters, replies, errors across routes) would be scattered.
"""
from __future__ import annotations

import html
from typing import Any

from vi_stream._version import __version__
from vi_stream.processing.control import STATES

_STATUS = {"type": "string", "enum": list(STATES)}
_OBJECT = {"type": "object"}


def _envelope(**fields: Any) -> dict:
    """psen_processing's envelope with the route's own fields."""
    return {"type": "object", "required": ["state", "status", *fields],
            "properties": {"state": {"type": "string", "enum": ["ok"]}, "status": _STATUS, **fields}}


_ERROR = {"type": "object", "required": ["state", "message"],
          "properties": {"state": {"type": "string", "enum": ["error"]}, "status": _STATUS,
                         "message": {"type": "string"}, "error": {"type": "string"},
                         "reason": {"type": "string"}}}
_ROI = {"type": "array", "items": {"type": "integer"}, "maxItems": 4,
        "description": "[offset_x, size_x, offset_y, size_y], or [] for the whole image"}
_SIDE = {"type": "object", "description": "a module side as stored (ATLAS schema, see README)"}


_JSON_MEDIA = "application/json"


def _json(schema: dict) -> dict:
    return {"content": {_JSON_MEDIA: {"schema": schema}}}


def _errors(*codes: int) -> dict:
    words = {400: "bad input", 401: "missing or wrong token",
             403: "sent by a page of another origin, or logged in but without the CSRF token",
             404: "unknown", 409: "wrong state", 415: "a body not declared application/json",
             421: "a Host that is none of this daemon's names (--rest-allowed-hosts)",
             429: "too many wrong tokens from this address: wait Retry-After seconds",
             503: "overloaded, or the store is unreachable"}
    return {str(c): {"description": words[c], **_json({"$ref": "#/components/schemas/Error"})} for c in codes}


def _op(summary: str, ok: dict, *errors: int, body: dict | None = None, params: list | None = None,
        mutating: bool = False, ok_media: str = "application/json", post: bool = False) -> dict:
    """Every route may answer 421 (foreign Host); every POST 403 (foreign origin) and, unless it takes
    a file, 415 (a body not declared JSON); a mutating route or the login also 401 and 429."""
    post = post or mutating
    takes_file = body is not None and _JSON_MEDIA not in body.get("content", {})
    codes = set(errors) | {421, 503} | ({403} if post else set()) | ({415} if post and not takes_file else set())
    codes |= {401, 429} if mutating else set()
    op: dict[str, Any] = {"summary": summary,
                          "responses": {"200": {"description": "ok", "content": {ok_media: {"schema": ok}}},
                                        **_errors(*sorted(codes))}}
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    if mutating:
        op["security"] = [{"bearer": []}, {"session": []}, {}]
    return op


def _path_param(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_MODULE = _path_param("name", {"type": "string", "minLength": 1})
_SIDE_NAME = _path_param("side", {"type": "string", "enum": ["left", "right"]})
_TILE = _path_param("tile", {"type": "integer", "minimum": 0})
_WORD = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_VERSION = {"type": "string", "pattern": "^[0-9]{1,6}[.][0-9]{1,6}$"}


def spec() -> dict:
    """The OpenAPI 3.0 document of every route."""
    stats = {"type": "object", "required": ["frames_received", "frames_processed", "frames_rejected"]}
    newer = {"type": "object", "nullable": True, "description": "the history row of the acquisition the side "
             "shows now, when it is not the one reviewed (null when it is)"}
    review_ok = _envelope(side=_SIDE, newer=newer)
    report_range = [_query("from", {"type": "string", "format": "date-time"}),
                    _query("to", {"type": "string", "format": "date-time"})]
    return {
        "openapi": "3.0.3",
        "info": {"title": "vi_stream REST control plane", "version": __version__,
                 "description": "Errors carry a real HTTP code, a message and the exception class as 'error'."},
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "with --token: needed on every mutating route"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "vi_session",
                                            "description": "the page's login (POST /api/login); with it, "
                                                           "mutating routes also need the X-CSRF-Token header"}},
        },
        "paths": {
            "/start": {"post": _op("start processing (idempotent)", _envelope(), mutating=True)},
            "/stop": {"post": _op("stop processing, finishing frames already taken (idempotent)", _envelope(),
                                  mutating=True)},
            "/status": {"get": _op("the envelope: stopped or processing, whether the store is up, the alarms",
                                   _envelope(
                store={"type": "object", "nullable": True, "description": "{up, reason}: whether the store takes "
                       "results now and, when not, why (they wait in the spool); null with --store off"},
                alarms={"type": "array", "items": _OBJECT, "description": "[{kind, message}]: store_down, "
                        "spool_growing, drift_red, anomalous_run (5 anomalous modules in a row)"}))},
            "/roi": {
                "get": _op("the region of interest", _envelope(roi=_ROI)),
                "post": _op("set the region of interest", _envelope(roi=_ROI), 400, mutating=True,
                            body={"required": True, **_json({"oneOf": [_ROI, {"type": "object", "properties": {
                                "roi": {"oneOf": [_ROI, {"type": "null"}]}}}]})}),
            },
            "/statistics": {"get": _op("counters, rates, latency, queues, the store", _envelope(statistics=stats))},
            "/metrics": {"get": _op("the same statistics in Prometheus' text format (prometheus_client)",
                                    {"type": "string"}, ok_media="text/plain")},
            "/config": {
                "get": _op("every option (secrets as ***)", _envelope(config=_OBJECT)),
                "post": _op("change run-time settings (threshold, roi, block, log_level): all or nothing",
                            _envelope(config=_OBJECT), 400, mutating=True,
                            body={"required": True, **_json({"type": "object", "properties": {
                                "threshold": {"type": "number", "nullable": True, "exclusiveMinimum": True,
                                              "minimum": 0},
                                "roi": _ROI, "block": {"type": "boolean"},
                                "log_level": {"type": "string", "enum": ["DEBUG", "INFO", "WARNING", "ERROR"]}},
                                "additionalProperties": False})}),
            },
            "/model": {"get": _op("the running model's metadata", _envelope(model=_OBJECT))},
            "/model/reload": {"post": _op("load another model and switch to it between frames",
                                          _envelope(model=_OBJECT), 400, mutating=True,
                                          body={"required": False, **_json({"type": "object", "properties": {
                                              "path": {"type": "string"}, "name": {"type": "string"}}})})},
            "/api/modules": {"get": _op("stored modules, newest first", _envelope(
                modules={"type": "array", "items": _OBJECT}, limit={"type": "integer"}, skip={"type": "integer"}),
                400, 409, params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                                  _query("skip", {"type": "integer", "minimum": 0})])},
            "/api/modules/{name}": {"get": _op("a whole module document", _envelope(module=_OBJECT), 404, 409,
                                               params=[_MODULE])},
            "/api/images/{image_id}": {"get": _op(
                "a stored PNG by its id (content-addressed: cacheable forever)",
                {"type": "string", "format": "binary"}, 400, 404, 409, ok_media="image/png",
                params=[_path_param("image_id", {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"})])},
            "/api/modules/{name}/{side}/tiles/{tile}/mask": {"post": _op(
                "upload tile's corrected mask (8-bit grey PNG of the tile's size, 0/255) and mark it verified",
                review_ok, 400, 404, 409, mutating=True,
                params=[_MODULE, _SIDE_NAME, _TILE, _query("result_id", {"type": "string"})],
                body={"required": True, "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}})},
            "/api/modules/{name}/{side}/tiles/{tile}/verify": {"post": _op(
                "mark a tile verified (or not)", review_ok, 400, 404, 409, mutating=True,
                params=[_MODULE, _SIDE_NAME, _TILE],
                body={"required": True, **_json({"type": "object", "properties": {
                    "verified": {"type": "boolean"}, "result_id": {"type": "string"}}})})},
            "/api/modules/{name}/{side}/decision": {"post": _op(
                "an operator's decision on a side's acquisition (result_id; the one shown without it), kept with "
                "that result; the operator is the login's", review_ok, 400, 404, 409, mutating=True,
                params=[_MODULE, _SIDE_NAME],
                body={"required": True, **_json({"type": "object", "required": ["verdict"], "properties": {
                    "verdict": {"type": "string", "enum": ["pass", "fail", "rework"]},
                    "categories": {"type": "array", "items": {"type": "string"}},
                    "comment": {"type": "string"}, "result_id": {"type": "string"}, "by": {"type": "string"}}})})},
            "/api/modules/{name}/{side}/results": {"get": _op(
                "every acquisition of a module side, newest first (history rows)", _envelope(
                    results={"type": "array", "items": _OBJECT}, limit={"type": "integer"}), 400, 404, 409,
                params=[_MODULE, _SIDE_NAME, _query("limit", {"type": "integer", "minimum": 1, "maximum": 500})])},
            "/api/modules/{name}/{side}/results/{result_id}": {"get": _op(
                "one acquisition of a side with its review; whether the side shows it, and the newer one if not",
                _envelope(module={"type": "string"}, side_name={"type": "string"}, side=_SIDE,
                          shown={"type": "boolean"}, newer=newer), 400, 404, 409,
                params=[_MODULE, _SIDE_NAME, _path_param("result_id", {"type": "string"})])},
            "/api/report": {"get": _op(
                "the shift report: every result processed from..to (default the last 8 h) with verdict and "
                "decision", _envelope(rows={"type": "array", "items": _OBJECT}, truncated={"type": "boolean"}),
                400, 409, params=report_range)},
            "/api/report.csv": {"get": _op(
                "the shift report as CSV", {"type": "string"}, 400, 409, ok_media="text/csv", params=report_range)},
            "/api/history": {"get": _op(
                "module sides, newest first, filtered and paged from indexes", _envelope(
                    sides={"type": "array", "items": _OBJECT}, total={"type": "integer"},
                    limit={"type": "integer"}, skip={"type": "integer"}), 400, 409,
                params=[_query("from", {"type": "string", "format": "date-time"}),
                        _query("to", {"type": "string", "format": "date-time"}),
                        _query("verdict", {"type": "string", "enum": ["anomalous", "good"]}),
                        _query("reviewed", {"type": "string", "enum": ["yes", "no"]}),
                        _query("tag", {"type": "string"}), _query("module", {"type": "string"}),
                        _query("model_version", {"type": "string"}),
                        _query("decision", {"type": "string", "enum": ["none", "any", "pass", "fail", "rework"]}),
                        _query("sort", {"type": "string", "enum": ["processed_at", "score", "module"]}),
                        _query("order", {"type": "string", "enum": ["desc", "asc"]}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                        _query("skip", {"type": "integer", "minimum": 0})])},
            "/api/models": {
                "get": _op("registered model versions (by name, newest first), with the aliases on each",
                           _envelope(models={"type": "array", "items": _OBJECT}), 400, 409,
                           params=[_query("name", {"type": "string"})]),
                "post": _op("register a model file (the body) as name@X.Y after loading and self-checking it",
                            _envelope(model=_OBJECT), 400, 409, mutating=True,
                            params=[{**_query("name", _WORD), "required": True}, _query("version", _VERSION),
                                    _query("by", {"type": "string"})],
                            body={"required": True, "content": {"application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}}}}),
            },
            "/api/models/{name}/{version}": {"get": _op(
                "one version: hash, metadata, calibration scores, aliases", _envelope(model=_OBJECT), 400, 404, 409,
                params=[_path_param("name", _WORD), _path_param("version", _VERSION)])},
            "/api/aliases": {"get": _op("where each alias points, and the last 50 changes (who, when, from, to, "
                                        "why)", _envelope(aliases=_OBJECT, changes={"type": "array"}), 409)},
            "/api/aliases/{alias}": {"post": _op(
                "point an alias at a version; 409 if it no longer points at 'expected'", _envelope(change=_OBJECT),
                400, 404, 409, mutating=True, params=[_path_param("alias", _WORD)],
                body={"required": True, **_json({"type": "object", "required": ["name", "version", "reason"],
                                                 "properties": {"name": _WORD, "version": _VERSION,
                                                                "reason": {"type": "string", "minLength": 1},
                                                                "expected": {"type": "string"},
                                                                "force": {"type": "boolean"},
                                                                "by": {"type": "string"}}})})},
            "/api/aliases/{alias}/rollback": {"post": _op(
                "point an alias back at the version before its latest promotion (409 when it no longer points "
                "at expected)", _envelope(change=_OBJECT),
                400, 409, mutating=True, params=[_path_param("alias", _WORD)],
                body={"required": True, **_json({"type": "object", "required": ["reason"], "properties": {
                    "reason": {"type": "string", "minLength": 1}, "expected": {"type": "string"},
                    "by": {"type": "string"}}})})},
            "/api/gate": {
                "get": _op("the newest promotion-gate set: verified defect and good tiles, frozen",
                           _envelope(gate=_OBJECT), 404, 409),
                "post": _op("freeze the verified tiles of now into a new gate set", _envelope(gate=_OBJECT), 400, 409,
                            mutating=True, body={"required": False, **_json({"type": "object", "properties": {
                                "by": {"type": "string"}}})}),
            },
            "/api/retrain": {
                "get": _op("the retraining job: idle, running, done or failed", _envelope(job=_OBJECT)),
                "post": _op("retrain from a folder of training images plus the tiles verified good, in the "
                            "background", _envelope(job=_OBJECT), 400, 404, 409, mutating=True,
                            body={"required": True, **_json({"type": "object", "required": ["images"], "properties": {
                                "images": {"type": "string"}, "from": _WORD, "to": _WORD, "name": _WORD,
                                "version": _VERSION, "by": {"type": "string"}}})}),
            },
            "/api/shadow": {"get": _op("shadow mode: agreement of the candidate with production, disagreements",
                                       _envelope(shadow=_OBJECT), 409)},
            "/api/batches": {"get": _op("vi_stream batch runs on Slurm, newest first",
                                        _envelope(batches={"type": "array", "items": _OBJECT}), 409)},
            "/api/batches/{batch_id}": {"get": _op(
                "one batch: inputs, state, tasks, jobs, log tails", _envelope(batch=_OBJECT), 404, 409,
                params=[_path_param("batch_id", {"type": "string"})])},
            "/api/drift": {"get": _op("the drift watch: green/yellow/red, the last chunk's KS, Wasserstein, "
                                      "fractions; the chunks kept", _envelope(drift=_OBJECT))},
            "/api/events": {"get": _op(
                "the live monitor's Server-Sent Events: status, trends, recent, logs, then verdict, frame, "
                "reject, status, log as they happen (at most 16 streams, 4 per client address: 503 beyond). "
                "tab names the page's browser tab: a stream from the same address and tab as an open one "
                "ends that one (a reloaded page's), which gets a superseded event",
                {"type": "string"}, 400, ok_media="text/event-stream",
                params=[_query("tab", {"type": "string", "pattern": "^[0-9a-fA-F]{8,64}$"})])},
            "/api/trends": {"get": _op(
                "the trends kept in the store (they survive a restart), the last hour unless from/to say: bins "
                "of 10 s (merged into wider ones beyond 720) with frames/s, fraction anomalous, score "
                "quantiles, latency p99, the model and threshold that judged them; the drift watch's chunks",
                _envelope(bin_s={"type": "number"}, bins={"type": "array", "items": _OBJECT},
                          drift={"type": "array", "items": _OBJECT}, stored={"type": "boolean"}), 400,
                params=[_query("from", {"type": "string", "format": "date-time"}),
                        _query("to", {"type": "string", "format": "date-time"})])},
            "/api/session": {"get": _op("whether a token is needed and this browser is logged in; its CSRF "
                                        "token, and the operator's name when it has one",
                                        _envelope(auth_required={"type": "boolean"}, logged_in={"type": "boolean"},
                                                  operator={"type": "string", "nullable": True}))},
            "/api/login": {"post": _op("exchange the token for a session cookie (HttpOnly, SameSite=Strict) "
                                       "and a CSRF token", _envelope(csrf={"type": "string"}), 400, 401, 409, 429,
                                       post=True,
                                       body={"required": True, **_json({"type": "object", "properties": {
                                           "token": {"type": "string"}}})})},
            "/api/logout": {"post": _op("end this browser's session", _envelope(logged_in={"type": "boolean"}),
                                        post=True)},
            "/": {"get": _op("the operator's page (monitor, history, module review)", {"type": "string"},
                             ok_media="text/html")},
            "/static/{name}": {"get": _op("the page's scripts and styles (shipped in the package)",
                                          {"type": "string"}, 404, ok_media="text/javascript",
                                          params=[_path_param("name", {"type": "string"})])},
            "/openapi.json": {"get": {"summary": "this document", "responses": {
                "200": {"description": "ok", **_json(_OBJECT)}, **_errors(421)}}},
            "/docs": {"get": {"summary": "this document for people", "responses": {
                "200": {"description": "ok", "content": {"text/html": {"schema": {"type": "string"}}}},
                **_errors(421)}}},
        },
    }


def docs_page(doc: dict) -> str:
    """A plain HTML page of the routes, from the same document (no scripts, works offline)."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(sorted(op["responses"]))
            lock = " &#128274;" if op.get("security") else ""
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code>{lock}</td>"
                        f"<td>{html.escape(op['summary'])}</td><td>{codes}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>vi_stream REST API</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em .8em;border-bottom:1px solid #ddd}"
            "</style></head><body>"
            f"<h1>vi_stream REST API {html.escape(doc['info']['version'])}</h1>"
            f"<p>{html.escape(doc['info']['description'])} &#128274; needs the token when one is set. "
            "Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>"
            "<table><tr><th>method</th><th>path</th><th>what</th><th>answers</th></tr>"
            + "".join(rows) + "</table></body></html>")
