"""The merger's ordering of pulses (``vi_stream merge``), apart from its sockets: what goes out when.

In sequence, a pulse goes out when it is the next one expected (the one after the last sent), or after it
waited ``max_wait`` s for the ones before it (the ids skipped are ``gaps``), or at once when ``buffer`` pulses
wait. A pulse behind the sequence that was never sent is forwarded at once and counted ``late``.

What one message can do is bounded, and the sequence can start again:

* **Duplicates**: a pulse is known by its id and timestamp. Every pulse sent in sequence or late is kept in a
  ring of ``window`` slots (slot ``id % window``): a pulse at most ``window`` ids behind the next expected that
  was sent is never sent again, however many late pulses came in between (fixed memory: two ids of one window
  never share a slot). Pulses buffered or held are matched too.
* **Stale**: a pulse more than ``window`` ids behind the next expected, not below the first pulse sent of
  this sequence, with a timestamp older than the last sent (a reconnecting worker's re-sent backlog) is
  dropped and counted ``stale``: the ring no longer knows whether it went out, and sending it again would be
  a duplicate far out of order. (Below the sequence's first pulse that first pulse may itself be the bogus
  one: such pulses are outliers and may confirm a restart.)
* **Outliers**: a pulse more than ``buffer`` ids ahead of everything known (the next expected and the pulses
  waiting), more than ``window`` ids behind the next expected, one behind by its id but more than
  ``CLOCK_MARGIN_S`` after the last sent by its timestamp (its camera restarted), or another frame claiming
  a waiting id, is *held*, not ordered: it moves nothing. Before a sequence is established (at start, after
  a restart) the same holds against the pulses waiting: one more than ``buffer`` ids from them is held.
  Unconfirmed after ``max_wait`` s it is forwarded and counted ``outliers``. So ids in the buffer never lie
  more than ``buffer`` apart, and no one pop counts more than ``buffer`` gaps; a bogus pulse id (10^15, or
  next + 4000 with a sane or a future timestamp) neither moves the next expected nor counts gaps. The limit:
  a bogus id at most ``buffer`` ahead is taken as in sequence; once it went out (``max_wait`` without the
  pulses before it) it counts up to ``buffer`` gaps and the real pulses before it come out ``late``.
* **Restarts**: ``CONFIRM`` such pulses with distinct ids within ``buffer`` of each other, none of them stale
  by the rule above bar the distance (ids in this sequence's range need timestamps not older than the last
  sent), are a new sequence (a camera restart, ids from 0 again, or a jump further than
  ``buffer``; a camera restart moves time forward, a re-sent backlog does not): the pulses buffered from the
  old sequence go out, the ring is cleared, and ordering starts again as at start: the lowest pulse waits up
  to ``max_wait`` s for ones before it, then the sequence goes on from there (``restarts``). If nothing was
  established and fewer than ``CONFIRM`` pulses wait (a bogus first pulse), those are forwarded as outliers
  instead and the agreeing pulses start the sequence, no restart counted.
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import Any

CONFIRM = 3            # pulses that agree before the sequence is taken to have started again
CLOCK_MARGIN_S = 1.0   # a pulse behind by id but this much newer by timestamp belongs to a new sequence
MAX_HELD = 16          # outlier candidates held at once; the oldest goes out when more come

Out = tuple[int, float, Any]      # (pulse id, arrival time, the message) to send


class Sequencer:
    def __init__(self, max_wait: float, buffer: int = 256, window: int = 4096, log=None):
        if window < 2 * buffer:
            raise ValueError(f"the duplicate window ({window}) must be at least twice the buffer ({buffer})")
        self.max_wait, self.buffer, self.window, self.log = max_wait, buffer, window, log
        self.next: int | None = None
        self._anchor: int | None = None                 # where a restarted sequence starts, until it sends
        self._start: int | None = None                  # the first pulse sent of this sequence
        self.last_ts: tuple[int, int] | None = None    # timestamp of the last pulse sent in sequence
        self._heap: list[tuple[int, float, int, tuple, Any]] = []
        self._buffered: dict[int, tuple] = {}                           # id -> timestamp of each in the heap
        self._seq = 0
        self._ring: list[tuple | None] = [None] * window
        self._held: list[tuple[tuple, float, Any]] = []                 # (key, arrived, message)
        self._candidates: deque[tuple] = deque(maxlen=4 * CONFIRM)     # keys of recent outliers, for a restart
        self._forwarded: deque[tuple] = deque(maxlen=4 * MAX_HELD)      # keys of outliers sent, for duplicates
        self.counts = {"gaps": 0, "late": 0, "duplicates": 0, "outliers": 0, "restarts": 0,
                       "stale": 0}

    @property
    def buffered(self) -> int:
        return len(self._heap) + len(self._held)

    # ------------------------------------------------------------------ a message arrives
    def offer(self, pulse: int, ts: tuple[int, int], arrived: float, msg: Any) -> list[Out]:
        """Take one pulse; return what goes out at once (a late pulse, an outlier pushed out, a restart's flush)."""
        key = (pulse, ts)
        if self._duplicate(key):
            self.counts["duplicates"] += 1
            return []
        if self._stale(pulse, ts):
            self.counts["stale"] += 1
            return []
        if self._outlier(pulse, ts):
            return self._hold(key, arrived, msg)
        if self.next is not None and pulse < self.next:
            self.counts["late"] += 1
            self._ring[pulse % self.window] = key
            return [(pulse, arrived, msg)]
        self._push(key, arrived, msg)
        return []

    def _duplicate(self, key: tuple) -> bool:
        pulse = key[0]
        if self._buffered.get(pulse) == key[1] or key in self._forwarded or any(k == key for k, _, _ in self._held):
            return True
        return self.next is not None and self.next - self.window <= pulse < self.next and \
            self._ring[pulse % self.window] == key

    def _stale(self, pulse: int, ts: tuple[int, int]) -> bool:
        """Further behind than the ring remembers and older than the last sent: a re-sent backlog."""
        return self.next is not None and pulse < self.next - self.window and self._older(pulse, ts)

    def _older(self, pulse: int, ts: tuple[int, int]) -> bool:
        """Within this sequence's ids and older than the last sent (below its start, the start may be bogus)."""
        return self.last_ts is not None and self._start is not None and pulse >= self._start and \
            tuple(ts) < tuple(self.last_ts)

    def _outlier(self, pulse: int, ts: tuple[int, int]) -> bool:
        if pulse in self._buffered:
            return True                              # another frame claiming a buffered id
        if self.next is None:                        # no sequence yet: compared with what waits
            return bool(self._buffered) and not \
                min(self._buffered) - self.buffer <= pulse <= max(self._buffered) + self.buffer
        if pulse > max([self.next, *self._buffered]) + self.buffer or pulse < self.next - self.window:
            return True                              # then no pop counts more than ``buffer`` gaps
        return pulse < self.next and self.last_ts is not None and \
            ts[0] + ts[1] * 1e-9 > self.last_ts[0] + self.last_ts[1] * 1e-9 + CLOCK_MARGIN_S

    def _push(self, key: tuple, arrived: float, msg: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (key[0], arrived, self._seq, key[1], msg))
        self._buffered[key[0]] = key[1]

    def _hold(self, key: tuple, arrived: float, msg: Any) -> list[Out]:
        out: list[Out] = []
        self._held.append((key, arrived, msg))
        if len(self._held) > MAX_HELD:
            out.append(self._forward_outlier(self._held.pop(0)))
        if self._older(key[0], key[1]):
            return out                               # older than the last sent: not a new sequence
        self._candidates.append(key)
        agree = {k[0] for k in self._candidates if abs(k[0] - key[0]) <= self.buffer}
        if len(agree) >= CONFIRM:
            out.extend(self._restart(key[0], agree))
        return out

    def _forward_outlier(self, held: tuple[tuple, float, Any]) -> Out:
        key, arrived, msg = held
        self.counts["outliers"] += 1
        self._forwarded.append(key)
        if self.log is not None:
            self.log.warning("outlier", f"pulse {key[0]} is far from the sequence (next expected {self.next}) "
                             "and nothing confirmed it: forwarded out of order, counted as an outlier",
                             pulse_id=key[0])
        return key[0], arrived, msg

    def _restart(self, pulse: int, agree: set[int]) -> list[Out]:
        old_next = self.next
        if old_next is None and len(self._heap) < CONFIRM:     # nothing was established: what waited is the odd one
            odd = sorted(self._heap, key=lambda h: (h[0], h[2]))
            self._heap, self._buffered = [], {}
            out = [self._forward_outlier(((p, ts), a, m)) for p, a, _, ts, m in odd]
            new = [h for h in self._held if h[0][0] in agree]
            self._held = [h for h in self._held if h[0][0] not in agree]
            self._candidates.clear()
            for key, arrived, msg in new:
                self._push(key, arrived, msg)
            return out
        out = self._flush()
        new = [h for h in self._held if h[0][0] in agree]
        self._held = [h for h in self._held if h[0][0] not in agree]
        self._ring = [None] * self.window
        self._candidates.clear()
        # like at start: the lowest waits up to max_wait for ones before it (the workers' order is not the camera's)
        self.next, self.last_ts = None, None
        self._anchor = min(k[0] for k, _, _ in new)
        for key in self._forwarded:                  # outliers of the new sequence sent before it was confirmed
            if abs(key[0] - pulse) < self.window:
                self._ring[key[0] % self.window] = key
        for key, arrived, msg in new:
            self._push(key, arrived, msg)
        self.counts["restarts"] += 1
        if self.log is not None:
            self.log.warning("restart", f"pulse ids jumped from {old_next} to {self._anchor} ({len(agree)} pulses "
                             "agree): a camera restart or a skip; ordering starts again there", pulse_id=self._anchor)
        return out

    # ------------------------------------------------------------------ time passes
    def due_in(self, now: float) -> float:
        """Seconds until something must go out even if nothing arrives (0.2 when nothing waits)."""
        arrivals = [a for _, a, _ in self._held] + ([self._heap[0][1]] if self._heap else [])
        return max(0.0, min(arrivals) + self.max_wait - now) if arrivals else 0.2

    def release(self, now: float) -> list[Out]:
        """What goes out now: held outliers nothing confirmed, then the sequence as far as it may go."""
        out = [self._forward_outlier(h) for h in self._held if now - h[1] >= self.max_wait]
        self._held = [h for h in self._held if now - h[1] < self.max_wait]
        while self._heap:
            pulse, arrived = self._heap[0][0], self._heap[0][1]
            in_order = self.next is not None and pulse == self.next
            if not (in_order or now - arrived >= self.max_wait or len(self._heap) > self.buffer):
                break
            out.append(self._pop())
        return out

    def _flush(self) -> list[Out]:
        return [self._pop() for _ in range(len(self._heap))]

    def _pop(self) -> Out:
        pulse, arrived, _seq, ts, msg = heapq.heappop(self._heap)
        self._buffered.pop(pulse, None)
        if self.next is not None and pulse > self.next:
            self.counts["gaps"] += pulse - self.next
        if self.next is None:
            self._start = pulse
        self.next, self.last_ts = pulse + 1, ts
        self._ring[pulse % self.window] = (pulse, ts)
        return pulse, arrived, msg
