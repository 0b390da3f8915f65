"""What the operator must be told at once: the alarms in ``GET /status`` and in the monitor's status event.

Each alarm is ``{"kind", "message"}`` (plus the figure it is about); the page shows them as a banner
and, when the operator asked for it, a sound. The daemon being gone is the one alarm the page raises
by itself: nothing here can say it.

* ``store_down``: results wait in the spool because the store cannot be written now;
* ``spool_growing``: the spool holds more results than it did ``window_s`` ago (and some);
* ``drift_red``: the drift watch judged the last chunk red;
* ``anomalous_run``: the last ``run_limit`` modules judged in a row were all anomalous (a line
  fault, a dirty lens, a model gone wrong: rarely that many bad modules).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

ANOMALOUS_RUN = 5     # this many anomalous modules in a row raise an alarm
SPOOL_WINDOW_S = 30.0


class Alarms:
    def __init__(self, run_limit: int = ANOMALOUS_RUN, window_s: float = SPOOL_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.run_limit, self.window_s, self.clock = run_limit, window_s, clock
        self._spool: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def _spool_grew(self, spooled: int) -> int:
        """How much the spool grew over the window (0 when it did not), sampled at every check."""
        now = self.clock()
        with self._lock:
            self._spool.append((now, spooled))
            while len(self._spool) > 1 and self._spool[1][0] <= now - self.window_s:
                self._spool.popleft()
            oldest = self._spool[0][1]
        return max(0, spooled - oldest)

    def check(self, store: dict | None, drift_state: str, anomalous_run: int) -> list[dict]:
        """The alarms now. ``store``: the store writer's statistics (None without a store)."""
        out: list[dict] = []
        if store is not None:
            if not store.get("up", True):
                out.append({"kind": "store_down", "message": "store down: results wait in the spool "
                            f"({store.get('spooled', 0)} now): {store.get('down_reason') or 'no answer'}"})
            grew = self._spool_grew(int(store.get("spooled") or 0))
            if grew and store.get("spooled"):
                out.append({"kind": "spool_growing", "spooled": store["spooled"],
                            "message": f"spool growing: {store['spooled']} results wait (+{grew} in "
                                       f"{self.window_s:.0f} s)"})
        if drift_state == "red":
            out.append({"kind": "drift_red", "message": "drift red: today's images no longer look like the "
                                                        "model's good ones (see the drift trend)"})
        if anomalous_run >= self.run_limit:
            out.append({"kind": "anomalous_run", "count": anomalous_run,
                        "message": f"{anomalous_run} anomalous modules in a row"})
        return out
