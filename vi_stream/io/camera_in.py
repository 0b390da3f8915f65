"""Camera input through OpenCV: a device index, a video file, an image folder or a glob."""
from __future__ import annotations

import glob
import os
import time

import cv2
import numpy as np

from vi_stream.errors import ConfigError, InputError
from vi_stream.frame import Frame
from vi_stream.io.files import IMAGE_SUFFIXES, read_image


class CameraSource:
    """``receive(timeout_ms)`` -> Frame or None; image sequences end (``exhausted``) unless ``loop``."""

    def __init__(self, spec: str, module: str = "camera", side: str = "left", loop: bool = False,
                 fps: float | None = None):
        self.spec = spec
        self.module = module
        self.side = side
        self.loop = loop
        self.period = 1.0 / fps if fps else 0.0
        self.exhausted = False
        self._cap = None
        self._files: list[str] = []
        self._i = 0
        self._pulse = 0
        self._next = 0.0

    def start(self) -> None:
        s = self.spec
        if s.isdigit():
            self._cap = cv2.VideoCapture(int(s))
        elif os.path.isdir(s):
            self._files = sorted(os.path.join(s, f) for f in os.listdir(s) if f.lower().endswith(IMAGE_SUFFIXES))
        elif any(ch in s for ch in "*?["):
            self._files = sorted(f for f in glob.glob(s) if f.lower().endswith(IMAGE_SUFFIXES))
        elif os.path.isfile(s) and s.lower().endswith(IMAGE_SUFFIXES):
            self._files = [s]
        elif os.path.isfile(s):
            self._cap = cv2.VideoCapture(s)
        else:
            raise ConfigError(f"camera {s!r} is not a device index, video file, image folder or glob")
        if self._cap is not None and not self._cap.isOpened():
            raise ConfigError(f"cannot open camera {s!r}")
        if self._cap is None and not self._files:
            raise ConfigError(f"camera {s!r}: no images found")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def receive(self, timeout_ms: int = 100) -> Frame | None:
        if self.exhausted:
            time.sleep(timeout_ms / 1000)
            return None
        wait = self._next - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout_ms / 1000))
            if self._next - time.monotonic() > 0:
                return None
        self._next = time.monotonic() + self.period
        if self._cap is not None:
            ok, img = self._cap.read()
            if not ok:
                self.exhausted = True
                return None
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img
        else:
            if self._i >= len(self._files):
                if not self.loop:
                    self.exhausted = True
                    return None
                self._i = 0
            path = self._files[self._i]
            self._i += 1
            try:
                img = read_image(path)
            except InputError as err:
                self._pulse += 1
                raise InputError(f"camera frame {path}: {err}") from err
        now = time.time()
        pulse = self._pulse
        self._pulse += 1
        return Frame(np.ascontiguousarray(img), pulse, int(now), int((now % 1) * 1e9), self.module, self.side, None)
