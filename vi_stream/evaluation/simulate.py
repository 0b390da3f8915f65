"""A simulated camera: synthetic module images published as a bsread stream.

Channels: ``<prefix>:FPICTURE`` (the image), ``<prefix>:MODULE``, ``<prefix>:SIDE``
and ``<prefix>:TRUTH`` (JSON list of the painted defects, for checking results
downstream: it is forwarded unchanged by the daemon).
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import zmq

from vi_stream.evaluation import synthetic
from vi_stream.io import bsread_codec as codec
from vi_stream.io.bsread_out import bind_sender


class Simulator:
    def __init__(self, port: int = 0, prefix: str = "VI", fps: float = 2.0, shape: tuple[int, int] = (768, 768),
                 kind: str = "grey8", defect_rate: float = 0.5, seed: int = 0, pool: int = 8,
                 compression: str | None = None, host: str = "127.0.0.1", mode: str = "push",
                 context: zmq.Context | None = None):
        self.port, self.prefix, self.fps, self.host, self.mode = port, prefix, fps, host, mode
        self.compression = compression
        self._ctx = context or zmq.Context.instance()
        rng = np.random.default_rng(seed)
        self.samples = []
        for i in range(pool):
            defects = ()
            if rng.random() < defect_rate:
                defects = (synthetic.DEFECT_TYPES[int(rng.integers(len(synthetic.DEFECT_TYPES)))],)
            self.samples.append(synthetic.module_image(shape, seed=seed * 1000 + 500 + i, defects=defects, kind=kind))
        self.sent = 0
        self._sock: zmq.Socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._enc = codec.Encoder()

    def start(self) -> int:
        self._sock, self.port = bind_sender(self._ctx, self.mode, self.host, self.port, 4)
        return self.port

    def message(self, pulse_id: int) -> codec.Message:
        s = self.samples[pulse_id % len(self.samples)]
        now = time.time()
        m = codec.Message(pulse_id, int(now), int((now % 1) * 1e9))
        p = self.prefix
        m.channels[f"{p}:FPICTURE"] = codec.channel_from_value(f"{p}:FPICTURE", s.image, self.compression)
        m.channels[f"{p}:MODULE"] = codec.channel_from_value(f"{p}:MODULE", f"SIM-{pulse_id % len(self.samples):04d}")
        m.channels[f"{p}:SIDE"] = codec.channel_from_value(f"{p}:SIDE", s.side)
        m.channels[f"{p}:TRUTH"] = codec.channel_from_value(f"{p}:TRUTH", json.dumps(s.defects))
        return m

    def send(self, pulse_id: int, timeout_ms: int = 1000) -> bool:
        """True if handed to ZMQ. Never blocks past the poll: the receiver can vanish between the
        poll and the send, and a blocking send would then wait for ever, holding the thread that
        close() must join before it closes the socket (a socket closed under a send aborts)."""
        if self._sock is None or not self._sock.poll(timeout_ms, zmq.POLLOUT):
            return False
        try:
            self._sock.send_multipart(self._enc.encode(self.message(pulse_id)), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        self.sent += 1
        return True

    def run(self, count: int | None = None) -> None:
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        pulse = 0
        nxt = time.monotonic()
        while not self._stop.is_set() and (count is None or pulse < count):
            if self.send(pulse, 200):
                pulse += 1
                nxt += period
                delay = nxt - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    nxt = time.monotonic()

    def run_in_thread(self, count: int | None = None) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, args=(count,), name="vi-simulator", daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
