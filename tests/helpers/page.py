"""What the browser tests do again and again: read the daemon's REST API, and bring the monitor to a
line that is processing with a frame on screen."""
from __future__ import annotations

import requests


def api(d, path: str):
    return requests.get(f"http://127.0.0.1:{d.rest_port}{path}", timeout=10).json()


def processing(pg, daemon) -> None:
    pg.goto(pg.base + "/#/monitor")
    if daemon.status() != "processing":
        pg.click("#start")
    pg.wait_for_selector("#state.processing")
    pg.wait_for_function("document.querySelector('#frame').dataset.pulse !== ''", timeout=30_000)
