"""Region of interest: ``[offset_x, size_x, offset_y, size_y]`` (psen_processing's order)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vi_stream.errors import ConfigError, InputError


def validate(roi: Sequence[int] | None, image_shape: tuple[int, ...] | None = None) -> list[int] | None:
    """A clean ROI list or None (whole image); ConfigError saying what is wrong."""
    if roi is None or (isinstance(roi, (list, tuple)) and len(roi) == 0):
        return None
    if not isinstance(roi, (list, tuple)) or len(roi) != 4:
        raise ConfigError(f"ROI must be [offset_x, size_x, offset_y, size_y] or [], got {roi!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in roi):
        raise ConfigError(f"ROI values must be integers, got {roi!r}")
    ox, sx, oy, sy = roi
    if ox < 0 or oy < 0:
        raise ConfigError(f"ROI offsets must be >= 0, got offset_x={ox} offset_y={oy}")
    if sx < 1 or sy < 1:
        raise ConfigError(f"ROI sizes must be >= 1, got size_x={sx} size_y={sy}")
    if image_shape is not None:
        h, w = image_shape[:2]
        if ox + sx > w or oy + sy > h:
            raise ConfigError(f"ROI {list(roi)} reaches outside the {w}x{h} image")
    return [ox, sx, oy, sy]


def crop(image: np.ndarray, roi: list[int] | None) -> np.ndarray:
    if roi is None:
        return image
    ox, sx, oy, sy = roi
    h, w = image.shape[:2]
    if ox + sx > w or oy + sy > h:
        raise InputError(f"ROI {roi} reaches outside the {w}x{h} image", reason="roi_outside_image")
    return image[oy:oy + sy, ox:ox + sx]
