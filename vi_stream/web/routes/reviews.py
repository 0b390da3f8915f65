"""The operator's review of a result: a corrected mask (a PNG body), a tile verified good or bad, and a
decision on the side (pass, fail, rework). Each applies to the acquisition named by ``result_id`` (the one
shown without it), also when the side was re-imaged since; the answer's ``newer`` is then the row of
the acquisition the side shows now (None when it is the one reviewed)."""
from __future__ import annotations

import bottle

from vi_stream.errors import InputError
from vi_stream.processing.control import Control
from vi_stream.web.body import json_object, who
from vi_stream.web.replies import reply

MAX_MASK_BYTES = 64 * 1024 * 1024


def add(app: bottle.Bottle, api: Control) -> None:
    @app.post("/api/modules/<name>/<side>/tiles/<tile:int>/mask", raw_body=True)   # a PNG, not JSON
    def correct_mask(name, side, tile):
        ctype = (bottle.request.content_type or "").split(";")[0].strip().lower()
        if ctype not in ("image/png", "application/octet-stream", ""):
            raise InputError(f"send the corrected mask as image/png, not {ctype}")
        png = bottle.request.body.read(MAX_MASK_BYTES + 1)
        if len(png) > MAX_MASK_BYTES:
            raise InputError(f"the corrected mask is larger than {MAX_MASK_BYTES // 2**20} MB")
        side_doc = api.results().correct_mask(name, side, tile, png, bottle.request.query.get("result_id"))
        return reply(side=side_doc, newer=api.results().newer(name, side, side_doc["result_id"]))

    @app.post("/api/modules/<name>/<side>/tiles/<tile:int>/verify")
    def verify(name, side, tile):
        data = json_object('send {"verified": true|false}')
        side_doc = api.results().verify(name, side, tile, data.get("verified", True), data.get("result_id"))
        return reply(side=side_doc, newer=api.results().newer(name, side, side_doc["result_id"]))

    @app.post("/api/modules/<name>/<side>/decision")
    def decide(name, side):
        data = json_object('send {"verdict": "pass"|"fail"|"rework", "categories": [...], "comment": "...", '
                           '"result_id": "..."}')
        side_doc = api.results().decide(name, side, data.get("verdict"), data.get("categories"),
                                        data.get("comment"), who(data), data.get("result_id"))
        return reply(side=side_doc, newer=api.results().newer(name, side, side_doc["result_id"]))
