"""The control routes: start, stop, status, ROI, settings, statistics, metrics and the running model.

These are the routes the HTTP server keeps a reserve of connections for
(:data:`vi_stream.web.server.CONTROL_ROUTES`): they answer in milliseconds.
"""
from __future__ import annotations

from typing import Callable

import bottle

from vi_stream.errors import ConfigError
from vi_stream.processing.control import Control
from vi_stream.web import prometheus
from vi_stream.web.body import json_body, json_object
from vi_stream.web.replies import reply


def add(app: bottle.Bottle, api: Control, refused: Callable[[], dict]) -> None:
    """``refused``: the request guard's refusal counts, shown in ``/statistics``."""
    registry = prometheus.registry_for(api.statistics)

    @app.post("/start")
    def start():
        api.start_processing()
        return reply()

    @app.post("/stop")
    def stop():
        api.stop_processing()
        return reply()

    @app.get("/status")
    def status():
        return reply(store=api.store_state(), alarms=api.alarm_list())

    @app.get("/roi")
    def get_roi():
        return reply(roi=api.get_roi())

    @app.post("/roi")
    def set_roi():
        data = json_body()
        roi = data.get("roi", data) if isinstance(data, dict) else data
        if isinstance(roi, dict):
            raise ConfigError("send the ROI as [offset_x, size_x, offset_y, size_y] or {\"roi\": [...]}")
        return reply(roi=api.set_roi(roi))

    @app.get("/statistics")
    def statistics():
        return reply(statistics={**api.statistics(), "rest_refused": refused()})

    @app.get("/metrics")
    def metrics():
        bottle.response.content_type = prometheus.CONTENT_TYPE
        return prometheus.exposition(registry)

    @app.get("/config")
    def get_config():
        return reply(config=api.get_config())

    @app.post("/config")
    def set_config():
        return reply(config=api.set_config(json_object("config must be a JSON object of option: value")))

    @app.get("/model")
    def model():
        return reply(model=api.model_info())

    @app.post("/model/reload")
    def reload_model():
        data = json_body()
        path = data.get("path") if isinstance(data, dict) else None
        name = data.get("name") if isinstance(data, dict) else None
        if (path is not None and not isinstance(path, str)) or (name is not None and not isinstance(name, str)):
            raise ConfigError("path and name must be strings")
        return reply(model=api.reload_model(path, name))
