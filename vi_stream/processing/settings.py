"""Run-time settings: one owner for each rule, all or nothing.

The same checks run on the command line, on the YAML file and on ``POST /config``,
so a value refused at run time is also refused at start-up (and the other way
round). :func:`validate` checks every change before any is applied.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from vi_stream.processing import roi as roi_mod
from vi_stream.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Longest side of the operator page's live preview, px: about the size the page shows it at.
# Every open monitor tab decodes and draws each preview, so a larger one costs a browser on the
# daemon's own machine frames/s (bench/ui.py, bench/README.md).
PREVIEW_SIDE = 640


@dataclass(frozen=True)
class Settings:
    """What may change between frames (never mid-frame: a frame uses one Settings)."""

    roi: list[int] | None = None
    threshold: float | None = None   # None: the model's own threshold


def check_threshold(value: Any) -> float | None:
    """A finite positive number, or None for the model's own threshold."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"threshold must be a positive finite number or null, got {value!r}")
    return float(value)


def check_block(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"block must be true or false, got {value!r}")
    return value


def check_log_level(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.upper()


def check_roi(value: Any, image_shape: tuple[int, ...] | None = None) -> list[int] | None:
    if isinstance(value, tuple):
        value = list(value)
    return roi_mod.validate(value, image_shape)


RUNTIME: dict[str, Callable[..., Any]] = {
    "threshold": check_threshold,
    "roi": check_roi,
    "block": check_block,
    "log_level": check_log_level,
}


def validate(changes: dict, image_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Every change checked (the ROI against the last image seen); the clean values, or ConfigError
    naming the first bad one. Nothing is applied here, so a caller applies all or nothing."""
    if not isinstance(changes, dict):
        raise ConfigError("settings must be an object of option: value")
    unknown = [str(k) for k in changes if k not in RUNTIME]
    if unknown:
        raise ConfigError(f"option(s) {', '.join(unknown)} cannot change at run time "
                          f"(changeable: {', '.join(RUNTIME)}); restart with new flags")
    clean = {}
    for key, value in changes.items():
        clean[key] = check_roi(value, image_shape) if key == "roi" else RUNTIME[key](value)
    return clean


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")      # fullmatch: `$` would let a final newline in
_VERSION = re.compile(r"(\d{1,6})\.(\d{1,6})")


def check_word(what: str, value: Any) -> str:
    """A model name, an alias: 1-64 letters, digits, '_', '.', '-' (safe in a path and a URL)."""
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise ConfigError(f"{what} must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
                          f"digit), got {value!r}")
    return value


def parse_version(value: Any) -> tuple[int, int]:
    """``"X.Y"`` -> (X, Y): a registry version."""
    m = _VERSION.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ConfigError(f"a version is MAJOR.MINOR (e.g. 1.0), got {value!r}")
    return int(m.group(1)), int(m.group(2))
