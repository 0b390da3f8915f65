"""A log that says each kind of repeated problem once, then counts it (a bad stream can send thousands)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable


class RateLimitedLog:
    """First occurrence of each key is logged; then at most one summary line per ``interval`` s."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, pulse_id: int | None = None, module: str | None = None) -> None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        self.logger.warning("%s%s", msg, f" ({n} more '{key}' suppressed)" if n else "",
                            extra={"pulse_id": pulse_id, "module_name": module})

    def flush(self) -> None:
        """Say how many of each key were suppressed since last logged (at shutdown: nothing goes uncounted)."""
        with self._lock:
            pending, self._suppressed = self._suppressed, {}
        for key, n in pending.items():
            self.logger.warning("%d more '%s' suppressed since the last logged", n, key)
