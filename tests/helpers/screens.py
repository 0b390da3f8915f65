"""Screenshots for the manual: with VI_STREAM_SCREENSHOTS=<folder> the browser tests save what they
show there (``VI_STREAM_SCREENSHOTS=docs/screenshots make test`` refreshes docs/screenshots)."""
from __future__ import annotations

import os

SHOTS = os.environ.get("VI_STREAM_SCREENSHOTS")


def shot(pg, name: str) -> None:
    """Save page ``pg`` as ``<folder>/<name>.png`` when screenshots are asked for."""
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        pg.screenshot(path=os.path.join(SHOTS, f"{name}.png"))
