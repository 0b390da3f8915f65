"""The results, read back: modules, one module, every acquisition of a side and one of them, images (a live
preview or the store's) and the history."""
from __future__ import annotations

import re

import bottle

from vi_stream.errors import ConfigError
from vi_stream.processing.control import Control
from vi_stream.web.params import history_query, int_param
from vi_stream.web.replies import reply

_IMAGE_ID = re.compile(r"[0-9a-fA-F]{24}")


def _query_int(name: str, default: int, lo: int, hi: int) -> int:
    return int_param(name, bottle.request.query.get(name), default, lo, hi)


def add(app: bottle.Bottle, api: Control) -> None:
    @app.get("/api/modules")
    def list_modules():
        limit, skip = _query_int("limit", 100, 1, 1000), _query_int("skip", 0, 0, 10**9)
        return reply(modules=api.results().modules(limit, skip), limit=limit, skip=skip)

    @app.get("/api/modules/<name>")
    def get_module(name):
        return reply(module=api.results().module(name))

    @app.get("/api/modules/<name>/<side>/results")
    def acquisitions(name, side):
        limit = _query_int("limit", 50, 1, 500)
        return reply(results=api.results().acquisitions(name, side, limit), limit=limit)

    @app.get("/api/modules/<name>/<side>/results/<result_id>")
    def acquisition(name, side, result_id):
        return reply(**api.results().acquisition(name, side, result_id))

    @app.get("/api/images/<image_id>")
    def get_image(image_id):
        if not _IMAGE_ID.fullmatch(image_id):
            raise ConfigError(f"an image id is 24 hex digits, got {image_id[:40]!r}")
        data = api.results().image(image_id.lower())
        bottle.response.content_type = "image/png"
        bottle.response.set_header("Cache-Control", "public, max-age=31536000, immutable")  # content-addressed
        bottle.response.set_header("ETag", f'"{image_id.lower()}"')
        return data

    @app.get("/api/history")
    def history():
        query = history_query(dict(bottle.request.query.decode().allitems()))
        rows, total = api.results().history(query)
        return reply(sides=rows, total=total, limit=query.limit, skip=query.skip)
