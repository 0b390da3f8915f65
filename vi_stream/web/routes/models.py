"""The model registry and what watches it: versions, aliases (promote, roll back), the promotion gate's
set, retraining, shadow mode and the drift watch.

``GET /api/models``, ``GET /api/models/<name>/<version>``, ``POST /api/models?name=&version=``
(the model file as the body), ``GET /api/aliases``, ``POST /api/aliases/<alias>``
(``{"name", "version", "reason", "expected", "force", "by"}``; 409 when ``expected`` is stale or
the gate refuses), ``POST /api/aliases/<alias>/rollback`` (``{"reason", "expected", "by"}``), ``GET``/``POST
/api/gate`` (the promotion gate's set; freeze a new one), ``GET``/``POST /api/retrain`` (a retraining
job), ``GET /api/shadow``, ``GET /api/drift``.
"""
from __future__ import annotations

import bottle

from vi_stream.errors import ConfigError, InputError
from vi_stream.processing.control import Control
from vi_stream.web.body import json_object, text, who
from vi_stream.web.replies import reply

MAX_MODEL_BYTES = 1024 * 1024 * 1024


def add(app: bottle.Bottle, api: Control) -> None:
    @app.get("/api/models")
    def list_models():
        name = bottle.request.query.get("name") or None
        return reply(models=api.models().versions(name))

    @app.get("/api/models/<name>/<version>")
    def get_model(name, version):
        return reply(model=api.models().version(name, version))

    @app.post("/api/models", raw_body=True)   # the model file, not JSON
    def register_model():
        q = bottle.request.query
        name = q.get("name")
        if not name:
            raise ConfigError("name the model: POST /api/models?name=NAME[&version=X.Y] with the file as the body")
        data = bottle.request.body.read(MAX_MODEL_BYTES + 1)
        if len(data) > MAX_MODEL_BYTES:
            raise InputError(f"the model file is larger than {MAX_MODEL_BYTES // 2**20} MB")
        doc = api.models().register(data, name, q.get("version") or None, by=who({"by": q.get("by")}))
        return reply(model=doc)

    @app.get("/api/aliases")
    def aliases():
        aliases, changes = api.models().aliases()
        return reply(aliases=aliases, changes=changes)

    @app.post("/api/aliases/<alias>")
    def promote(alias):
        data = json_object('send {"name": ..., "version": "X.Y", "reason": ..., "expected": "name@X.Y"}')
        expected = data.get("expected")
        if expected is not None and not isinstance(expected, str):
            raise ConfigError("expected must be name@X.Y, or \"\" for an alias that points nowhere yet")
        force = data.get("force", False)
        if not isinstance(force, bool):
            raise ConfigError("force must be true or false")
        change = api.models().promote(alias, text(data, "name"), text(data, "version"), data.get("reason"),
                                      who(data), expected, force)
        return reply(change=change)

    @app.post("/api/aliases/<alias>/rollback")
    def rollback(alias):
        data = json_object('send {"reason": ...}')
        expected = data.get("expected")
        if expected is not None and not isinstance(expected, str):
            raise ConfigError("expected must be name@X.Y, \"\" or absent")
        change = api.models().rollback(alias, data.get("reason"), who(data), expected)
        return reply(change=change)

    @app.get("/api/gate")
    def gate():
        return reply(gate=api.models().gate_set())

    @app.post("/api/gate")
    def freeze_gate():
        data = json_object('send {} or {"by": ...}')
        return reply(gate=api.models().freeze_gate(who(data)))

    @app.get("/api/retrain")
    def retrain_status():
        return reply(job=api.retrain_status())

    @app.post("/api/retrain")
    def retrain_start():
        data = json_object('send {"images": "/folder/of/the/training/images", "from": "production", '
                           '"to": "candidate"}')
        kw = {"from_alias": text(data, "from", False) or "production", "to_alias": text(data, "to", False) or "candidate",
              "name": text(data, "name", False), "version": text(data, "version", False), "by": who(data)}
        return reply(job=api.retrain(text(data, "images"), **kw))

    @app.get("/api/shadow")
    def shadow():
        return reply(shadow=api.shadow_status())

    @app.get("/api/drift")
    def drift():
        return reply(drift=api.drift_status())
