"""REST routes of the model registry and the drift watch (added to :func:`vi_stream.web.app.make_app`).

``GET /api/models``, ``GET /api/models/<name>/<version>``, ``POST /api/models?name=&version=``
(the model file as the body), ``GET /api/aliases``, ``POST /api/aliases/<alias>``
(``{"name", "version", "reason", "expected", "force", "by"}``; 409 when ``expected`` is stale or
the gate refuses),
``POST /api/aliases/<alias>/rollback`` (``{"reason", "by"}``), ``GET``/``POST /api/gate`` (the
promotion gate's set; freeze a new one), ``GET``/``POST /api/retrain`` (a retraining job),
``GET /api/shadow``, ``GET /api/drift``, ``GET /api/batches[/<id>]`` (``vi_stream batch`` records).
"""
from __future__ import annotations

from typing import Any, Callable

import bottle

from vi_stream.processing.control import Control
from vi_stream.registry import retrain
from vi_stream.errors import ConfigError, InputError, NotFoundError

MAX_MODEL_BYTES = 1024 * 1024 * 1024


def add_routes(app: bottle.Bottle, api: Control, guarded: Callable, reply: Callable,
               body_object: Callable[[str], dict]) -> None:
    def who(data: dict) -> str:
        by = data.get("by")
        if by is not None and (not isinstance(by, str) or len(by) > 200):
            raise ConfigError("by must be a short string (who made the change)")
        return by or f"rest@{bottle.request.remote_addr}"

    def text(data: dict, key: str, required: bool = True) -> Any:
        v = data.get(key)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key} must be a non-empty string")
        return v

    @app.get("/api/models")
    @guarded(False)
    def list_models():
        name = bottle.request.query.get("name") or None
        return reply(models=api.model_registry().versions(name))

    @app.get("/api/models/<name>/<version>")
    @guarded(False)
    def get_model(name, version):
        return reply(model=api.model_registry().version(name, version))

    @app.post("/api/models", raw_body=True)   # the model file, not JSON
    @guarded(True)
    def register_model():
        q = bottle.request.query
        name = q.get("name")
        if not name:
            raise ConfigError("name the model: POST /api/models?name=NAME[&version=X.Y] with the file as the body")
        data = bottle.request.body.read(MAX_MODEL_BYTES + 1)
        if len(data) > MAX_MODEL_BYTES:
            raise InputError(f"the model file is larger than {MAX_MODEL_BYTES // 2**20} MB")
        doc = api.model_registry().register(data, name, q.get("version") or None,
                                            by=q.get("by") or f"rest@{bottle.request.remote_addr}", source="rest")
        return reply(model=doc)

    @app.get("/api/aliases")
    @guarded(False)
    def aliases():
        reg = api.model_registry()
        return reply(aliases=reg.aliases(), changes=reg.changes(limit=50))

    @app.post("/api/aliases/<alias>")
    @guarded(True)
    def promote(alias):
        data = body_object('send {"name": ..., "version": "X.Y", "reason": ..., "expected": "name@X.Y"}')
        expected = data.get("expected")
        if expected is not None and not isinstance(expected, str):
            raise ConfigError("expected must be name@X.Y, or \"\" for an alias that points nowhere yet")
        force = data.get("force", False)
        if not isinstance(force, bool):
            raise ConfigError("force must be true or false")
        change = retrain.promote(api.model_registry(), alias, text(data, "name"), text(data, "version"),
                                 data.get("reason"), who(data), expected, force)
        api.model_moved()
        return reply(change=change)

    @app.post("/api/aliases/<alias>/rollback")
    @guarded(True)
    def rollback(alias):
        data = body_object('send {"reason": ...}')
        change = api.model_registry().rollback(alias, data.get("reason"), who(data))
        api.model_moved()
        return reply(change=change)

    @app.get("/api/gate")
    @guarded(False)
    def gate():
        doc = api.model_registry().store.gate_sets.get_gate_set()
        if doc is None:
            raise NotFoundError("no gate set yet: verify defect and good tiles, then POST /api/gate")
        return reply(gate=doc)

    @app.post("/api/gate")
    @guarded(True)
    def freeze_gate():
        data = body_object('send {} or {"by": ...}')
        doc = retrain.freeze_gate(api.model_registry().store, who(data))
        return reply(gate={k: v for k, v in doc.items() if k != "tiles"})

    @app.get("/api/retrain")
    @guarded(False)
    def retrain_status():
        return reply(job=api.retrain_status())

    @app.post("/api/retrain")
    @guarded(True)
    def retrain_start():
        data = body_object('send {"images": "/folder/of/the/training/images", "from": "production", '
                           '"to": "candidate"}')
        kw = {"from_alias": text(data, "from", False) or "production", "to_alias": text(data, "to", False) or "candidate",
              "name": text(data, "name", False), "version": text(data, "version", False), "by": who(data)}
        return reply(job=api.retrain(text(data, "images"), **kw))

    @app.get("/api/shadow")
    @guarded(False)
    def shadow():
        return reply(shadow=api.shadow_status())

    @app.get("/api/batches")
    @guarded(False)
    def batches():
        return reply(batches=api.results_store().batches.list_batches())

    @app.get("/api/batches/<batch_id>")
    @guarded(False)
    def batch(batch_id):
        return reply(batch=api.results_store().batches.get_batch(batch_id))

    @app.get("/api/drift")
    @guarded(False)
    def drift():
        return reply(drift=api.drift_status())
