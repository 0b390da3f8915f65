"""The records of ``vi_stream batch`` runs (Slurm folders scored offline), read back."""
from __future__ import annotations

import bottle

from vi_stream.processing.control import Control
from vi_stream.web.replies import reply


def add(app: bottle.Bottle, api: Control) -> None:
    @app.get("/api/batches")
    def batches():
        return reply(batches=api.results().batches())

    @app.get("/api/batches/<batch_id>")
    def batch(batch_id):
        return reply(batch=api.results().batch(batch_id))
