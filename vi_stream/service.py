"""Logging for a service: one line per event on stderr, no timestamps of our own
(the journal adds them), with syslog priority prefixes (``<3>`` error ...
``<7>`` debug) that journald turns into priorities."""
from __future__ import annotations

import logging
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record).replace("\n", " | ")
        return f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {msg}"


def setup_logging(level: str = "INFO", stream=None) -> None:
    root = logging.getLogger("vi_stream")
    for h in list(root.handlers):
        root.removeHandler(h)
    h = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(JournalFormatter())
    root.addHandler(h)
    root.setLevel(level.upper())
    root.propagate = False
