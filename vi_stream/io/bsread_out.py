"""bsread output: PUSH (default) or PUB, every input channel forwarded
unchanged plus the result channels named after the image channel."""
from __future__ import annotations

import json

import numpy as np
import zmq

from vi_stream.errors import ConfigError
from vi_stream.frame import Result
from vi_stream.io import bsread_codec as codec


def bind_sender(ctx: zmq.Context, mode: str, host: str, port: int, hwm: int) -> tuple[zmq.Socket, int]:
    """A PUSH or PUB socket bound to ``host:port`` (port 0: an ephemeral port); returns (socket, port)."""
    s = ctx.socket(zmq.PUSH if mode == "push" else zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, hwm)
    if port:
        s.bind(f"tcp://{host}:{port}")
    else:
        port = s.bind_to_random_port(f"tcp://{host}")
    return s, port


class BsreadSink:
    def __init__(self, port: int, image_channel: str, host: str = "127.0.0.1", mode: str = "push",
                 block: bool = False, compression: str | None = None, context: zmq.Context | None = None,
                 queue: int = 8):
        if mode not in ("push", "pub"):
            raise ConfigError(f"output mode must be 'push' or 'pub', got {mode!r}")
        if compression not in codec.COMPRESSIONS:
            raise ConfigError(f"output compression must be none or bitshuffle_lz4, got {compression!r}")
        self.port = port
        self.host = host
        self.mode = mode
        self.block = block
        self.compression = compression
        self.image_channel = image_channel
        self.queue = queue
        self._ctx = context or zmq.Context.instance()
        self._enc = codec.Encoder()
        self._sock: zmq.Socket | None = None

    def start(self) -> int:
        self._sock, self.port = bind_sender(self._ctx, self.mode, self.host, self.port, self.queue)
        return self.port

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def message(self, r: Result) -> codec.Message:
        f = r.frame
        msg = codec.Message(f.pulse_id, f.sec, f.ns)
        src = f.passthrough
        if isinstance(src, codec.Message):
            msg.channels.update(src.channels)  # unchanged bytes, unchanged metadata
        else:
            msg.channels[self.image_channel] = codec.channel_from_value(self.image_channel, f.image, self.compression)
        n = self.image_channel
        c = self.compression
        msg.channels[f"{n}.processing_parameters"] = codec.channel_from_value(
            f"{n}.processing_parameters", json.dumps(r.parameters))
        msg.channels[f"{n}.anomaly_map"] = codec.channel_from_value(f"{n}.anomaly_map", r.heatmap.astype(np.float32), c)
        msg.channels[f"{n}.mask"] = codec.channel_from_value(f"{n}.mask", r.mask.astype(np.uint8), c)
        msg.channels[f"{n}.score"] = codec.channel_from_value(f"{n}.score", float(r.score))
        msg.channels[f"{n}.is_anomalous"] = codec.channel_from_value(f"{n}.is_anomalous", bool(r.is_anomalous))
        msg.channels[f"{n}.defects"] = codec.channel_from_value(f"{n}.defects", json.dumps(r.defects))
        return msg

    def set_block(self, block: bool) -> None:
        """Wait for a slow consumer (True) or drop outputs it cannot take (False), from the next send on."""
        self.block = bool(block)

    def send(self, r: Result, timeout_ms: int = 1000) -> bool:
        """True if handed to ZMQ; False if dropped (no consumer / consumer too slow and not blocking)."""
        return self.send_parts(self._enc.encode(self.message(r)), timeout_ms)

    def send_parts(self, parts: list[bytes], timeout_ms: int = 1000) -> bool:
        s = self._sock
        if s is None:
            return False
        if self.block:
            # Blocking, but in slices so that stop() is never held up for long.
            if not s.poll(timeout_ms, zmq.POLLOUT):
                return False
        try:
            s.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False
