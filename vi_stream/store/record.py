"""A processed frame as the store keeps it: the ATLAS side document plus its PNG images.

Pure (numpy + cv2): no database, no files. A :class:`Record` is built once, in the
store writer's thread, and is then either written to a store or spooled to disk as
is, so a replay writes exactly the bytes the first attempt would have written.

Ids are deterministic, so a replay never duplicates anything:

* an image's id is the first 12 bytes of the SHA-256 of its PNG bytes (24 hex
  digits, a valid MongoDB ObjectId); identical images (the mask and the
  corrected mask it starts as, empty mask tiles) are stored once;
* a result's id is derived from the camera prefix, module, side, pulse id and
  timestamp of the frame.

Tiles are a grid of ``tile`` px squares over the scored image (the ROI),
row-major, the last row and column cut at the image edge. They are the units of
review: ``verified_masks[i]`` and a corrected mask belong to tile ``i``.

Longer than 300 lines: the record is one format (its side document, its PNG encoders, and the
correction read back into it); split, what is written and what is read back would live apart.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import cv2
import numpy as np

from vi_stream.errors import InputError
from vi_stream.frame import Result

GROUPS = ("original", "preprocessed", "anomaly_map", "mask", "corrected_mask")
SIDES = ("left", "right")
THUMBNAIL_SIDE = 256          # longest side of a thumbnail, px
PNG_LEVEL = 1                 # zlib level 1 with the RLE strategy: for cv2 (uint16, RGB) measured on 2048x2048
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL,  # modules 15% faster and 16% smaller than its default
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def image_id(png: bytes) -> str:
    return hashlib.sha256(png).hexdigest()[:24]


def result_id(prefix: str, module: str, side: str, pulse_id: int, sec: int, ns: int) -> str:
    key = json.dumps([prefix, module, side, int(pulse_id), int(sec), int(ns)])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG of a grey (uint8/uint16) or RGB uint8 array.

    8-bit grey (frames, masks) is written by :func:`_png` with the Up filter and zlib's RLE
    strategy, faster than cv2 at the same size (bench/history.md). Other kinds go through cv2.
    """
    if image.ndim == 2 and image.dtype == np.uint8:
        h, w = image.shape
        rows = np.empty((h, w + 1), np.uint8)
        rows[:, 0] = 2                       # filter type Up: each row minus the one above
        rows[0, 1:] = image[0]
        np.subtract(image[1:], image[:-1], out=rows[1:, 1:])
        return _png(rows, w, h, 0, strategy=zlib.Z_RLE)
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), PNG_PARAMS)
    if not ok:  # pragma: no cover - cv2 encodes every array shape/type we pass
        raise InputError(f"cannot encode a {image.dtype} {image.shape} image as PNG")
    return buf.tobytes()


def encode_indexed_png(levels: np.ndarray, palette: np.ndarray) -> bytes:
    """A palette PNG (colour type 3): 8-bit ``levels`` indexing the (256, 3) RGB ``palette``.

    Decoders show it as the colour image; it is exactly ``palette[levels]``. The
    colourised anomaly map is such an image, and compressing one byte per pixel
    instead of three is about 4x faster than cv2's RGB PNG (bench/store.py).
    """
    h, w = levels.shape
    rows = np.zeros((h, w + 1), np.uint8)  # each scanline: filter type 0, then the indices
    rows[:, 1:] = levels
    return _png(rows, w, h, 3, palette=np.ascontiguousarray(palette, np.uint8).tobytes())


def _png(rows: np.ndarray, width: int, height: int, colour_type: int, palette: bytes | None = None,
         strategy: int = zlib.Z_DEFAULT_STRATEGY) -> bytes:
    """An 8-bit PNG from filtered scanlines (``rows``: filter byte + pixels per row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(PNG_LEVEL, zlib.DEFLATED, 15, 8, strategy)
    data = z.compress(rows.tobytes()) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + (chunk(b"PLTE", palette) if palette is not None else b"")
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def tile_boxes(height: int, width: int, tile: int) -> list[list[int]]:
    """Row-major ``[x, y, w, h]`` of a grid of ``tile`` px squares, cut at the edges."""
    return [[x, y, min(tile, width - x), min(tile, height - y)]
            for y in range(0, height, tile) for x in range(0, width, tile)]


def thumbnail_scale(height: int, width: int) -> float:
    return min(1.0, THUMBNAIL_SIDE / max(height, width))


def shrink(image: np.ndarray, scale: float, is_mask: bool = False) -> np.ndarray:
    """Downscale by ``scale``; a mask keeps every defect visible (any marked pixel marks the thumbnail pixel)."""
    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if is_mask:
        return np.where(cv2.resize(image, size, interpolation=cv2.INTER_AREA) > 0, 255, 0).astype(np.uint8)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_8bit(image: np.ndarray) -> np.ndarray:
    """What the model saw, for people: 8-bit, grey stays grey, contrast-stretched unless already uint8."""
    if image.dtype == np.uint8:
        return image
    from vi_stream.model import postprocess
    img = postprocess.to_display(image)
    return img[..., 0] if image.ndim == 2 else img


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def timestamp_iso(sec: int, ns: int) -> str | None:
    if not sec and not ns:
        return None
    return datetime.fromtimestamp(sec + ns * 1e-9, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Record:
    """One processed frame: ``side`` is the ATLAS side document (image ids as 24-hex strings,
    times as ISO-8601 strings); ``images`` maps every id it references to PNG bytes."""

    id: str
    module: str
    side_name: str
    side: dict
    images: dict[str, bytes] = field(default_factory=dict)
    uploaded_by: str = "vi_stream"

    def header(self) -> dict:
        """Everything but the image bytes (JSON-safe)."""
        return {"id": self.id, "module": self.module, "side_name": self.side_name, "side": self.side,
                "uploaded_by": self.uploaded_by, "images": {k: len(v) for k, v in self.images.items()}}


def _add(images: dict[str, bytes], png: bytes) -> str:
    """Keep ``png`` under its content id (once, however often it occurs); returns the id."""
    key = image_id(png)
    images.setdefault(key, png)
    return key


def _group(images: dict[str, bytes], full: np.ndarray, boxes: list[list[int]], scale: float,
           with_tiles: bool, is_mask: bool = False, whole: np.ndarray | None = None,
           encode: Callable[[np.ndarray], bytes] = encode_png) -> dict:
    """Encode one image group: ``{"thumbnail": {...}, "full": {...}}`` with src_id/tiled_id."""
    def put(img: np.ndarray) -> str:
        return _add(images, encode(img))

    src = full if whole is None else whole
    group = {"full": {"src_id": put(src), "tiled_id": []},
             "thumbnail": {"src_id": put(shrink(src, thumbnail_scale(*src.shape[:2]), is_mask)), "tiled_id": []}}
    if with_tiles:
        for x, y, w, h in boxes:
            t = np.ascontiguousarray(full[y:y + h, x:x + w])
            group["full"]["tiled_id"].append(put(t))
            group["thumbnail"]["tiled_id"].append(put(shrink(t, scale, is_mask)))
    return group


def _copy(group: dict) -> dict:
    return {k: {"src_id": v["src_id"], "tiled_id": list(v["tiled_id"])} for k, v in group.items()}


def build(result: Result, prefix: str, tile: int = 512, with_tiles: bool = True, tag: str = "",
          uploaded_by: str = "vi_stream") -> Record:
    """Render a processed frame into a Record (PNG encoding: the costly part, done off the processing path)."""
    f = result.frame
    roi_img = result.image
    h, w = roi_img.shape[:2]
    boxes = tile_boxes(h, w, tile)
    scale = thumbnail_scale(h, w)
    threshold = float(result.parameters.get("threshold", 0.0)) or 1.0
    roi = result.parameters.get("roi") or []
    original_roi = roi_img  # the ROI crop in the frame's own type: tiles of the original
    images: dict[str, bytes] = {}
    mask255 = (result.mask > 0).astype(np.uint8) * 255
    side: dict[str, Any] = {"tag": tag, "tile_count": len(boxes), "verified_masks": [False] * len(boxes)}
    side["original"] = _group(images, original_roi, boxes, scale, with_tiles, whole=f.image)
    pre = to_8bit(roi_img)
    if pre is roi_img and roi_img is f.image:
        side["preprocessed"] = _copy(side["original"])  # 8-bit, no ROI: the model saw the original (same files)
    else:
        side["preprocessed"] = _group(images, pre, boxes, scale, with_tiles)
    # postprocess (numba) here, not at the top: the stores import this module, and a command that
    # only reads a store (`models list`, `batch list`) should start without numba.
    from vi_stream.model import postprocess
    palette = postprocess.turbo_palette()
    side["anomaly_map"] = _group(images, postprocess.heat_levels(result.heatmap, threshold), boxes, scale, with_tiles,
                                 encode=lambda levels: encode_indexed_png(levels, palette))
    side["mask"] = _group(images, mask255, boxes, scale, with_tiles, is_mask=True)
    side["corrected_mask"] = _copy(side["mask"])  # starts as the model's mask (the same files)
    rid = result_id(prefix, f.module, f.side, f.pulse_id, f.sec, f.ns)
    side.update({
        # What we know beyond the ATLAS shape.
        "result_id": rid,
        "pulse_id": int(f.pulse_id),
        "acquired_at": timestamp_iso(f.sec, f.ns),
        "processed_at": now_iso(),
        "score": float(result.score),
        "is_anomalous": bool(result.is_anomalous),
        "defects": result.defects,
        "model_id": result.parameters.get("model_id"),
        "model_version": result.parameters.get("model_version"),     # name@X.Y from the registry, else None
        "threshold": result.parameters.get("threshold"),
        "vi_stream_version": result.parameters.get("vi_stream_version"),
        "processed_by": uploaded_by,
        "processing_parameters": result.parameters,
        "image_shape": [h, w],
        "frame_shape": list(f.image.shape[:2]),
        "roi": list(roi),
        "tile_size": tile,
        "tiles": boxes,
        "tiles_stored": bool(with_tiles),
        "anomaly_map_scale": [0.0, 2.0 * threshold],
        "corrected_tiles": [],
    })
    return Record(rid, f.module, f.side, side, images, uploaded_by)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


def png_header(png: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk, read without decoding:
    a few hundred bytes can declare 30000x30000 pixels, so sizes are checked before any decode."""
    if not png.startswith(PNG_SIGNATURE):
        raise InputError("not a PNG image", reason="bad_png")
    if len(png) < 33 or png[12:16] != b"IHDR" or struct.unpack(">I", png[8:12])[0] != 13:
        raise InputError("the PNG has no valid IHDR header", reason="bad_png")
    if zlib.crc32(png[12:29]) != struct.unpack(">I", png[29:33])[0]:
        raise InputError("the PNG's IHDR header is corrupt (CRC mismatch)", reason="bad_png")
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    return width, height, depth, colour


def decode_mask(png: bytes, box: list[int]) -> np.ndarray:
    """A reviewer's corrected tile mask: a PNG of exactly the tile's size, 8-bit grey, only 0 and 255.
    The header is checked first; only a PNG that declares the right size and kind is decoded."""
    if not png:
        raise InputError("empty body: send the corrected mask as PNG bytes")
    if not png.startswith(PNG_SIGNATURE):
        raise InputError("the corrected mask must be a PNG image")
    width, height, depth, colour = png_header(png)
    if colour != 0 or depth != 8:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, "?")
        raise InputError(f"the corrected mask must be 8-bit single-channel, got {channels} channel(s) "
                         f"({_PNG_COLOUR.get(colour, colour)}) of {depth} bits")
    if (width, height) != (box[2], box[3]):
        raise InputError(f"the corrected mask must be {box[2]}x{box[3]} px (tile size), got {width}x{height}")
    arr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError("the corrected mask is not a readable PNG")
    if arr.ndim != 2 or arr.dtype != np.uint8:
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        raise InputError(f"the corrected mask must be 8-bit single-channel, got {channels} channel(s) of {arr.dtype}")
    want = (box[3], box[2])
    if arr.shape != want:
        raise InputError(f"the corrected mask must be {want[1]}x{want[0]} px (tile size), got {arr.shape[1]}x{arr.shape[0]}")
    bad = np.setdiff1d(np.unique(arr), [0, 255])
    if bad.size:
        raise InputError(f"the corrected mask may only hold 0 and 255, found {bad[:5].tolist()}")
    return arr


def correction(side: dict, tile: int, tile_mask: np.ndarray, full_corrected: np.ndarray) -> tuple[dict, dict[str, bytes]]:
    """The side document after pasting ``tile_mask`` into tile ``tile``, with the new images.

    ``full_corrected`` is the current corrected full mask (decoded); it is not modified.
    """
    x, y, w, h = side["tiles"][tile]
    images: dict[str, bytes] = {}

    def put(img: np.ndarray) -> str:
        return _add(images, encode_png(img))

    full = full_corrected.copy()
    full[y:y + h, x:x + w] = tile_mask
    scale = thumbnail_scale(*full.shape[:2])
    group = _copy(side["corrected_mask"])
    group["full"]["src_id"] = put(full)
    group["thumbnail"]["src_id"] = put(shrink(full, scale, True))
    if group["full"]["tiled_id"]:
        group["full"]["tiled_id"][tile] = put(tile_mask)
        group["thumbnail"]["tiled_id"][tile] = put(shrink(tile_mask, scale, True))
    new = dict(side)
    new["corrected_mask"] = group
    verified = list(side["verified_masks"])
    verified[tile] = True
    new["verified_masks"] = verified
    new["corrected_tiles"] = sorted(set(side.get("corrected_tiles", [])) | {tile})
    new["reviewed_at"] = now_iso()
    return new, images


def check_side(side_name: Any) -> str:
    """A module side's name as a request gives it: left or right (InputError otherwise)."""
    if side_name not in SIDES:
        raise InputError(f"side must be left or right, got {side_name!r}")
    return side_name


def check_tile(side: dict, tile: Any) -> int:
    n = side.get("tile_count", 0)
    if isinstance(tile, bool) or not isinstance(tile, int) or not 0 <= tile < n:
        raise InputError(f"tile must be an index 0-{n - 1}, got {tile!r}")
    return tile

