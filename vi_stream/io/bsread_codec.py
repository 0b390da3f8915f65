"""bsread wire format (``bsr_m-1.1`` / ``bsr_d-1.1``), strict and bounded.

A bsread message is one ZMQ multipart message::

    [main header JSON] [data header JSON, maybe compressed] ([value] [timestamp 2 x int64])*

The main header carries ``pulse_id``, ``global_timestamp {sec, ns}`` and
``hash`` = md5 of the data-header bytes; the data header lists the channels
(``name``, ``type``, ``shape`` fastest-dimension first, ``encoding``,
``compression`` none|lz4|bitshuffle_lz4). We write our own codec rather than
drive psi-bsread's mflow receive loop so that every malformed message is
rejected with a *reason* (and the size of every array is checked before it
is decompressed); tests prove it byte-compatible with psi-bsread in both
directions. Compression uses the same bitshuffle/lz4 libraries.

Longer than 300 lines: one wire format, its decoder and encoder side by side, so what one writes
the other reads by the same rules (and the tests prove both against psi-bsread).
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vi_stream.errors import DecodeError  # noqa: F401 - re-exported: codec.DecodeError

DTYPES = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
          "int64": "i8", "uint64": "u8", "float32": "f4", "float64": "f8", "bool": "?", "string": "u1"}
COMPRESSIONS = (None, "none", "lz4", "bitshuffle_lz4")
MAX_DATA_HEADER = 4 * 1024 * 1024      # bytes of a data header, compressed or not (thousands of channels fit)
MAX_STRING = 1024 * 1024               # bytes of a string channel's value
MAX_PULSE_ID = 2**63 - 1               # stores keep pulse ids as signed 64-bit integers
MAX_SECONDS = 253402300799             # 9999-12-31T23:59:59Z: the last second a date can name
_TYPE_OF = {np.dtype(v).newbyteorder("<").str[1:]: k for k, v in DTYPES.items() if k != "string"}


@dataclass
class Channel:
    name: str
    meta: dict                 # the channel's data-header entry, as received/sent
    data: bytes                # value bytes as on the wire (possibly compressed)
    timestamp: bytes = b""     # 16 bytes or empty

    @property
    def type(self) -> str:
        return str(self.meta.get("type", "float64")).lower()

    @property
    def shape(self) -> list[int]:
        return list(self.meta.get("shape", [1]))

    @property
    def compression(self) -> str | None:
        c = self.meta.get("compression")
        return None if c in (None, "none") else c

    @property
    def byteorder(self) -> str:
        return ">" if self.meta.get("encoding") == "big" else "<"


@dataclass
class Message:
    pulse_id: int
    sec: int
    ns: int
    channels: dict[str, Channel] = field(default_factory=dict)  # insertion-ordered

    @property
    def timestamp(self) -> float:
        return self.sec + self.ns * 1e-9


# ------------------------------------------------------------------ decoding
class Decoder:
    """Decodes messages; caches the parsed data header by its hash, as bsread does."""

    def __init__(self):
        self._hash: str | None = None
        self._dh: bytes = b""
        self._channels: list[dict] | None = None

    def decode(self, parts: list[bytes]) -> Message:
        main, pulse_id, sec, ns = main_header(parts)
        if not isinstance(main.get("hash"), str):
            raise DecodeError("bad_header", "main header has no hash string")
        digest = main["hash"]
        dh_bytes = bytes(parts[1])
        if len(dh_bytes) > MAX_DATA_HEADER:
            raise DecodeError("too_large", f"data header of {len(dh_bytes)} bytes exceeds {MAX_DATA_HEADER}")
        # Reuse the parsed header only for the very same bytes under the same hash;
        # anything else is verified against the hash first.
        if digest != self._hash or dh_bytes != self._dh:
            if hashlib.md5(dh_bytes).hexdigest() != digest:
                raise DecodeError("hash_mismatch", "data header does not match the main header's hash")
            self._channels = self._parse_data_header(dh_bytes, main.get("dh_compression"))
            self._hash, self._dh = digest, dh_bytes
        channels = self._channels
        if len(parts) != 2 + 2 * len(channels):
            raise DecodeError("bad_parts", f"{len(parts) - 2} value parts for {len(channels)} channels")
        msg = Message(pulse_id, sec, ns)
        for i, meta in enumerate(channels):
            data = bytes(parts[2 + 2 * i])
            stamp = bytes(parts[3 + 2 * i])
            msg.channels[meta["name"]] = Channel(meta["name"], meta, data, stamp)
        return msg

    def _parse_data_header(self, raw: bytes, compression: str | None) -> list[dict]:
        if compression not in COMPRESSIONS:
            raise DecodeError("unsupported_compression", f"data header compression {compression!r} not supported")
        text = raw if compression in (None, "none") else \
            _decompress(raw, "u1", compression, MAX_DATA_HEADER, exact=False).tobytes()
        header = _json(text, "data header")
        chans = header.get("channels") if isinstance(header, dict) else None
        if not isinstance(chans, list):
            raise DecodeError("bad_header", "data header has no channel list")
        out = []
        for c in chans:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise DecodeError("bad_header", f"bad channel entry {str(c)[:80]}")
            shape = c.get("shape", [1])
            if not (isinstance(shape, list) and shape
                    and all(type(s) is int and 0 <= s < 2**40 for s in shape)):
                raise DecodeError("bad_header", f"channel {c['name']}: bad shape {shape!r}")
            out.append(c)
        return out


def main_header(parts: list[bytes]) -> tuple[dict, int, int, int]:
    """(main header, pulse id, sec, ns) of a message, checked; the data is not read (a fan-in
    orders messages by pulse id without decoding them)."""
    if len(parts) < 2:
        raise DecodeError("bad_parts", f"message has {len(parts)} part(s); a bsread message has at least 2")
    if len(parts[0]) > MAX_DATA_HEADER:
        raise DecodeError("too_large", f"main header of {len(parts[0])} bytes exceeds {MAX_DATA_HEADER}")
    main = _json(bytes(parts[0]), "main header")
    if not isinstance(main, dict) or not str(main.get("htype", "")).startswith("bsr_m"):
        raise DecodeError("bad_header", "main header has no bsr_m htype")
    ts = main.get("global_timestamp") or {}
    if not isinstance(ts, dict):
        raise DecodeError("bad_header", "main header's global_timestamp is not an object")
    pulse_id = _header_int(main, "pulse_id", None, MAX_PULSE_ID)
    sec = _header_int(ts, "sec", ts.get("epoch", 0), MAX_SECONDS)
    ns = _header_int(ts, "ns", 0, 999_999_999)
    return main, pulse_id, sec, ns


def _json(raw: bytes, what: str) -> Any:
    """JSON of a header; anything that is not (including nesting deep enough to exhaust the parser) is bad_json."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise DecodeError("bad_json", f"{what} is not JSON: {str(err)[:200]}") from err


def _header_int(obj: dict, key: str, default: int | None, hi: int) -> int:
    """A whole number 0..hi from a header (not a bool, float or string): anything else is bad_header."""
    v = obj.get(key, default)
    if v is None:
        raise DecodeError("bad_header", f"main header has no {key}")
    if type(v) is not int or not 0 <= v <= hi:
        raise DecodeError("bad_header", f"main header's {key} must be a whole number 0-{hi}, got {str(v)[:40]}")
    return v


def value(ch: Channel, max_bytes: int = 512 * 1024 * 1024) -> Any:
    """The channel's value: numpy array (numpy order: slowest dimension first), scalar, str or None."""
    t = ch.type
    if t not in DTYPES:
        raise DecodeError("unsupported_type", f"channel {ch.name}: type {t!r} is not supported")
    if not ch.data:
        return None
    dt = np.dtype(DTYPES[t]).newbyteorder(ch.byteorder)
    if t == "string":
        raw = _decompress(ch.data, dt, ch.compression, min(max_bytes, MAX_STRING), exact=False)
        return raw.tobytes().decode("utf-8", errors="replace")
    shape = ch.shape
    n = math.prod(shape)   # Python ints: no overflow on absurd shapes
    if n * dt.itemsize > max_bytes:
        raise DecodeError("too_large", f"channel {ch.name}: shape {shape} of {t} exceeds {max_bytes} bytes")
    try:
        arr = _decompress(ch.data, dt, ch.compression, n * dt.itemsize)
    except DecodeError as err:
        raise DecodeError(err.reason, f"channel {ch.name}: {err}") from None
    if shape == [1]:
        return arr[0]
    return arr.reshape(shape[::-1])


def _check_bitshuffle_blocks(data: bytes, n: int, block: int, item: int) -> None:
    """Walk the block frames (``[u32 BE size][lz4]`` each) before bitshuffle reads them: its C code
    trusts each frame's size and reads past the buffer's end on a lying one (a crash, found by the
    fuzzer). ``n // block`` full blocks, one block of the rest rounded down to 8 elements, then the
    last ``n % 8`` elements as they are; the frames must fill the value exactly."""
    frames = n // block + (1 if (n % block) // 8 else 0)
    pos, end = 12, len(data)
    unpack = struct.Struct(">I").unpack_from
    for _ in range(frames):
        if pos + 4 > end:
            raise DecodeError("bad_compression", "bitshuffle_lz4 data ends inside a block header")
        pos += 4 + unpack(data, pos)[0]
        if pos > end:
            raise DecodeError("bad_compression", "a bitshuffle_lz4 block claims more bytes than the value holds")
    if pos + (n % 8) * item != end:
        raise DecodeError("bad_compression", f"bitshuffle_lz4 blocks fill {pos + (n % 8) * item} of {end} bytes")


def _decompress(data: bytes, dt, compression: str | None, limit: int, exact: bool = True) -> np.ndarray:
    """Values of type ``dt`` from ``data``. The size a compressed value declares is checked before
    anything is decompressed: it must equal ``limit`` (the declared shape's bytes) when ``exact``,
    else be at most ``limit``."""
    dt = np.dtype(dt)

    def check(n_bytes: int) -> None:
        if exact and n_bytes != limit:
            raise DecodeError("too_large" if n_bytes > limit else "bad_size",
                              f"value holds {n_bytes} bytes, its shape and type make {limit}")
        if n_bytes < 0 or n_bytes > limit:
            raise DecodeError("too_large", f"value claims {n_bytes} bytes (limit {limit})")
        if n_bytes % dt.itemsize:
            raise DecodeError("bad_size", f"{n_bytes} bytes is not a whole number of {dt} values")

    if compression in (None, "none"):
        check(len(data))
        return np.frombuffer(data, dt)
    if compression == "bitshuffle_lz4":
        if len(data) < 12:
            raise DecodeError("bad_size", "bitshuffle_lz4 value shorter than its 12-byte header")
        n_bytes = struct.unpack(">q", data[:8])[0]
        block = struct.unpack(">i", data[8:12])[0]
        check(n_bytes)
        if block <= 0 or block % dt.itemsize or (block // dt.itemsize) % 8:
            raise DecodeError("bad_size", "bitshuffle_lz4 header does not fit the channel type")
        _check_bitshuffle_blocks(data, n_bytes // dt.itemsize, block // dt.itemsize, dt.itemsize)
        import bitshuffle
        try:
            return bitshuffle.decompress_lz4(np.frombuffer(data[12:], np.uint8), (n_bytes // dt.itemsize,), dt,
                                             block // dt.itemsize)
        except (ValueError, RuntimeError) as err:
            raise DecodeError("bad_compression", f"bitshuffle_lz4 data is corrupt: {err}") from err
    if compression == "lz4":
        if len(data) < 4:
            raise DecodeError("bad_size", "lz4 value shorter than its 4-byte header")
        n_bytes = struct.unpack("<I" if dt.byteorder != ">" else ">I", data[:4])[0]
        check(n_bytes)
        import lz4.block
        try:
            raw = lz4.block.decompress(data[4:], uncompressed_size=n_bytes)
        except Exception as err:  # lz4 raises LZ4BlockError, a bare Exception subclass
            raise DecodeError("bad_compression", f"lz4 data is corrupt: {err}") from err
        if len(raw) != n_bytes:
            raise DecodeError("bad_size", f"lz4 payload of {len(raw)} bytes, its header says {n_bytes}")
        return np.frombuffer(raw, dt)
    raise DecodeError("unsupported_compression", f"compression {compression!r} not supported")


# ------------------------------------------------------------------ encoding
def channel_from_value(name: str, v: Any, compression: str | None = None, timestamp: bytes = b"") -> Channel:
    """Encode a Python/numpy value as a new channel (types as psi-bsread derives them)."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r} not supported")
    if isinstance(v, str):
        arr, t, shape = np.frombuffer(v.encode(), np.uint8), "string", [1]
    elif isinstance(v, (bool, np.bool_)):
        arr, t, shape = np.array([v], "?"), "bool", [1]
    elif isinstance(v, int):
        arr, t, shape = np.array([v], "<i8"), "int64", [1]
    elif isinstance(v, float):
        arr, t, shape = np.array([v], "<f8"), "float64", [1]
    elif isinstance(v, np.generic):
        arr = np.array([v])
        t, shape = _TYPE_OF[arr.dtype.newbyteorder("<").str[1:]], [1]
    elif isinstance(v, np.ndarray):
        arr = np.ascontiguousarray(v)
        t, shape = _TYPE_OF[arr.dtype.newbyteorder("<").str[1:]], list(arr.shape)[::-1]
    else:
        raise TypeError(f"cannot encode {type(v).__name__} as a bsread channel")
    meta = {"name": name, "type": t, "shape": shape,
            "encoding": "big" if arr.dtype.byteorder == ">" else "little"}
    if compression not in (None, "none"):
        meta["compression"] = compression
    return Channel(name, meta, _compress(arr, compression), timestamp)


def _compress(arr: np.ndarray, compression: str | None) -> bytes:
    if compression in (None, "none"):
        return arr.tobytes()
    if compression == "bitshuffle_lz4":
        import bitshuffle
        item = arr.dtype.itemsize
        block = max(128, int((8192 / item) // 8 * 8))
        flat = arr.reshape(-1)
        return struct.pack(">q", arr.nbytes) + struct.pack(">i", block * item) + \
            bitshuffle.compress_lz4(flat, block).tobytes()
    if compression == "lz4":
        import lz4.block
        raw = arr.tobytes()
        return struct.pack("<I", len(raw)) + lz4.block.compress(raw, store_size=False)
    raise ValueError(f"compression {compression!r} not supported")


class Encoder:
    """Builds multipart messages; re-serialises the data header only when channels change."""

    def __init__(self):
        self._key: tuple | None = None
        self._dh: bytes = b""
        self._hash = ""

    def encode(self, msg: Message) -> list[bytes]:
        key = tuple(json.dumps(c.meta, sort_keys=True) for c in msg.channels.values())
        if key != self._key:
            self._dh = json.dumps({"htype": "bsr_d-1.1", "channels": [c.meta for c in msg.channels.values()]}).encode()
            self._hash = hashlib.md5(self._dh).hexdigest()
            self._key = key
        main = {"htype": "bsr_m-1.1", "pulse_id": int(msg.pulse_id),
                "global_timestamp": {"sec": int(msg.sec), "ns": int(msg.ns)}, "hash": self._hash}
        parts = [json.dumps(main).encode(), self._dh]
        stamp_default = struct.pack("<qq", int(msg.sec), int(msg.ns))
        for c in msg.channels.values():
            parts.append(c.data)
            parts.append(c.timestamp if c.timestamp or not c.data else stamp_default)
        return parts
