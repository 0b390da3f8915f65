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


JOURNAL_SOCKET = "/run/systemd/journal/socket"


class JournalHandler(logging.Handler):
    """Structured entries over journald's native protocol (no library needed).

    Fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, LOGGER, VI_PREFIX (static),
    and VI_MODULE / VI_PULSE_ID when the log call passes ``extra={"module_name":
    ..., "pulse_id": ...}``. Query with e.g. ``journalctl VI_PULSE_ID=812``.
    """

    def __init__(self, path: str = JOURNAL_SOCKET, identifier: str = "vi_stream", prefix: str | None = None):
        import socket
        super().__init__()
        self.path = path
        self.static = {"SYSLOG_IDENTIFIER": identifier}
        if prefix:
            self.static["VI_PREFIX"] = prefix
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @staticmethod
    def _field(key: str, value: str) -> bytes:
        v = value.encode("utf-8", "replace")
        if b"\n" in v:  # binary-safe form: KEY\n<64-bit LE length><value>\n
            import struct
            return key.encode() + b"\n" + struct.pack("<Q", len(v)) + v + b"\n"
        return key.encode() + b"=" + v + b"\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(self.static, MESSAGE=self.format(record), PRIORITY=str(_PRIORITY.get(record.levelno, 6)),
                          LOGGER=record.name)
            if getattr(record, "module_name", None):
                fields["VI_MODULE"] = str(record.module_name)
            if getattr(record, "pulse_id", None) is not None:
                fields["VI_PULSE_ID"] = str(record.pulse_id)
            self.sock.sendto(b"".join(self._field(k, v) for k, v in fields.items()), self.path)
        except Exception:  # logging must never take the daemon down
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def journal_connected(env=None) -> bool:
    """True when systemd connected our stderr to the journal (JOURNAL_STREAM = dev:inode of fd 2)."""
    import os
    env = os.environ if env is None else env
    js = env.get("JOURNAL_STREAM")
    if not js:
        return False
    try:
        st = os.fstat(2)
        dev, ino = js.split(":")
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def setup_logging(level: str = "INFO", stream=None, prefix: str | None = None,
                  journal_socket: str | None = None) -> None:
    """stderr lines with priority prefixes; structured journal entries when under systemd."""
    import os
    root = logging.getLogger("vi_stream")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    path = journal_socket or (JOURNAL_SOCKET if stream is None and journal_connected() else None)
    if path and os.path.exists(path):
        h: logging.Handler = JournalHandler(path, prefix=prefix)
        h.setFormatter(logging.Formatter("%(message)s"))
    else:
        h = logging.StreamHandler(stream or sys.stderr)
        h.setFormatter(JournalFormatter())
    root.addHandler(h)
    root.setLevel(level.upper())
    root.propagate = False


class Notifier:
    """sd_notify(3) over the AF_UNIX datagram socket named by ``NOTIFY_SOCKET``.

    Without ``NOTIFY_SOCKET`` (not under systemd) every call is a no-op, so the
    daemon runs the same way from a shell. Abstract sockets (``@name``) are
    supported.
    """

    def __init__(self, address: str | None = None):
        import os
        import socket
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock = None
        if self.address:
            addr = self.address
            if addr.startswith("@"):
                addr = "\0" + addr[1:]
            self._target = addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (e.g. ``notify(READY="1", STATUS="...")``); False if not sent."""
        if self._sock is None:
            return False
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(msg, self._target)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: dict | None = None) -> float | None:
    """Half of systemd's WatchdogSec (from ``WATCHDOG_USEC``), if it is meant for this process."""
    import os
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 2e6)
    except ValueError:
        return None


def status_line(stats: dict) -> str:
    """One-line summary for systemd's STATUS= (shown by `systemctl status`)."""
    lat = stats.get("latency_ms", {}).get("p50")
    return (f"{stats.get('state', '?')}: {stats.get('frames_processed', 0)} frames, "
            f"{stats.get('frames_per_s', 0.0):.2f} fps, {stats.get('megapixels_per_s', 0.0):.2f} MP/s, "
            f"p50 {lat if lat is not None else '-'} ms, rejected {stats.get('frames_rejected_total', 0)}, "
            f"dropped {stats.get('output_dropped', 0)}")


def supervise(processor, notifier: "Notifier", stop_event, status_every: float = 5.0,
              watchdog: float | None = None, line=status_line) -> None:
    """The service's main loop: READY was sent by the caller; ping the watchdog only while the
    processing loop is healthy, refresh STATUS= (``line(processor.statistics())``), return when
    ``stop_event`` is set."""
    import time
    tick = min(x for x in (status_every, watchdog or status_every, 1.0) if x)
    next_status = 0.0
    while not stop_event.wait(tick):
        now = time.monotonic()
        if watchdog and processor.healthy():
            notifier.notify(WATCHDOG="1")
        if now >= next_status:
            notifier.notify(STATUS=line(processor.statistics()))
            next_status = now + status_every
