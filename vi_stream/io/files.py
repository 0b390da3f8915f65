"""Image files in folders: listing, reading (as RGB), writing results atomically."""
from __future__ import annotations

import os
import tempfile
import threading
from typing import Iterator

import cv2
import numpy as np

from vi_stream.errors import ConfigError, InputError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".ppm")


def list_images(folder: str) -> list[str]:
    """Image files in ``folder`` (not recursive), sorted by name."""
    if not os.path.isdir(folder):
        raise ConfigError(f"not a folder: {folder}")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def read_image(path: str) -> np.ndarray:
    """Grey (H, W) or colour RGB (H, W, 3), uint8/uint16/float32 as stored."""
    return _as_rgb(cv2.imread(path, cv2.IMREAD_UNCHANGED), path)


def decode_image(data: bytes, what: str) -> np.ndarray:
    """An encoded image (a stored PNG) as :func:`read_image` returns a file."""
    return _as_rgb(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), what)


def _as_rgb(img: np.ndarray | None, what: str) -> np.ndarray:
    if img is None or img.size == 0:
        raise InputError(f"cannot read image {what}")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if img.shape[2] == 1:
            img = img[:, :, 0]
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def iter_images(paths: list[str]) -> Iterator[np.ndarray]:
    for p in paths:
        yield read_image(p)


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def write_image(path: str, image: np.ndarray) -> str:
    """Write atomically (temp + rename); colour arrays are RGB."""
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        if not cv2.imwrite(tmp, img):
            raise InputError(f"cannot write image {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str, text: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_durably(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is complete on disk or absent: temp file, fsync, rename.

    The containing folder is not fsync'ed here (see :func:`fsync_dir`), so a caller writing many
    files into one folder pays for that once.
    """
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_dir(folder: str) -> None:
    """Make renames into ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
