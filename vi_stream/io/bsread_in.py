"""bsread input: a PULL (default) or SUB socket connected to a bsread sender."""
from __future__ import annotations

import math

import numpy as np
import zmq

from vi_stream.errors import ConfigError, InputError
from vi_stream.frame import Frame, check_module
from vi_stream.io import bsread_codec as codec


class BsreadSource:
    """``receive(timeout_ms)`` -> Frame, None on timeout; DecodeError (with ``reason``) on a bad message."""

    def __init__(self, address: str, prefix: str, mode: str = "pull", context: zmq.Context | None = None,
                 max_bytes: int = 256 * 1024 * 1024, max_pixels: int = 64 * 1024 * 1024):
        if mode not in ("pull", "sub"):
            raise ConfigError(f"input mode must be 'pull' or 'sub', got {mode!r}")
        if not address.startswith(("tcp://", "ipc://", "inproc://")):
            raise ConfigError(f"input must be a ZMQ address like tcp://host:port, got {address!r}")
        self.address = address
        self.mode = mode
        self.image_channel = f"{prefix}:FPICTURE"
        self.module_channel = f"{prefix}:MODULE"
        self.side_channel = f"{prefix}:SIDE"
        self.tag_channel = f"{prefix}:TAG"
        self.prefix = prefix
        self.max_pixels = max_pixels
        self._ctx = context or zmq.Context.instance()
        self._decoder = codec.Decoder()
        self._max_bytes = max_bytes
        self._sock: zmq.Socket | None = None

    def start(self) -> None:
        s = self._ctx.socket(zmq.PULL if self.mode == "pull" else zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 4)
        s.setsockopt(zmq.MAXMSGSIZE, self._max_bytes + 1024 * 1024)  # libzmq drops a peer that sends more
        if self.mode == "sub":
            s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(self.address)
        self._sock = s

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def receive(self, timeout_ms: int = 100) -> Frame | None:
        if self._sock is None or not self._sock.poll(timeout_ms):
            return None
        parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=True)
        try:
            return self.to_frame(self._decoder.decode(parts))
        except InputError:
            raise
        except Exception as err:  # a message was taken: it must be accounted for as rejected, never vanish
            raise codec.DecodeError("bad_message", f"message cannot be decoded: {err!r}"[:300]) from err

    def to_frame(self, msg: codec.Message) -> Frame:
        ch = msg.channels.get(self.image_channel)
        if ch is None:
            raise codec.DecodeError("missing_image", f"pulse {msg.pulse_id}: no channel {self.image_channel}")
        shape = ch.shape
        if ch.type not in ("uint8", "uint16", "float32", "float64"):
            raise codec.DecodeError("unsupported_type", f"pulse {msg.pulse_id}: image type {ch.type!r} "
                                    "(need uint8, uint16 or float)")
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != 3):
            raise codec.DecodeError("bad_shape", f"pulse {msg.pulse_id}: image shape {shape} is not 2-D grey or 3xWxH colour")
        if math.prod(shape[-2:]) > self.max_pixels:
            raise codec.DecodeError("too_large", f"pulse {msg.pulse_id}: image {shape} exceeds {self.max_pixels} pixels")
        img = codec.value(ch, self._max_bytes)
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise codec.DecodeError("bad_shape", f"pulse {msg.pulse_id}: image is empty or not an array")
        if img.dtype.byteorder == ">":
            img = img.astype(img.dtype.newbyteorder("<"))
        module = self._module(msg)
        raw_side = self._string(msg, self.side_channel) or "left"
        side = {"l": "left", "r": "right"}.get(raw_side.lower(), raw_side.lower())
        if side not in ("left", "right"):
            # Guessing would file the image under the wrong side of the module in the store.
            raise codec.DecodeError("bad_side", f"pulse {msg.pulse_id}: {self.side_channel} must be left or right, "
                                    f"got {raw_side[:40]!r}")
        tag = self._string(msg, self.tag_channel) or ""
        return Frame(img, msg.pulse_id, msg.sec, msg.ns, module, side, msg, tag)

    def _module(self, msg: codec.Message) -> str:
        """The module name (the prefix without the channel). One the store could not file or REST not
        reach (a '/', a control character, over 256 characters: frame.check_module) is refused, as a bad
        side is: filing it under another name would mix two modules' images."""
        ch = msg.channels.get(self.module_channel)
        try:
            value = codec.value(ch, 4096) if ch is not None and ch.type == "string" else None
            return check_module(value.strip() if isinstance(value, str) and value.strip() else self.prefix)
        except InputError as err:
            raise codec.DecodeError("bad_module", f"pulse {msg.pulse_id}: {self.module_channel}: {err}"[:300]) from err

    @staticmethod
    def _string(msg: codec.Message, name: str) -> str | None:
        ch = msg.channels.get(name)
        if ch is None or ch.type != "string":
            return None
        try:
            v = codec.value(ch, 4096)
        except InputError:
            return None
        return v.strip() or None if isinstance(v, str) else None
