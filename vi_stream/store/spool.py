"""The on-disk spool: records wait here, in order, while the store cannot take them.

One file per record, ``<seq:012d>.rec``, written to a temp name, fsync'ed and
renamed (a crash leaves a complete file or none). Sequence numbers give the replay
order, also across restarts. The format is ours and never unpickled::

    b"VISPOOL1" | u64 header length | header (JSON) | image bytes ... | SHA-256 of all before

A file that fails its checksum (a disk fault) or that the store keeps refusing is
moved to ``failed/`` with the reason beside it, for a person to look at: it is set
aside, never deleted.

One daemon per spool folder: a lock file guards it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import struct
import threading

from vi_stream.errors import ConfigError, InputError
from vi_stream.store.record import Record
from vi_stream.io.files import fsync_dir, write_durably

log = logging.getLogger("vi_stream.store")

MAGIC = b"VISPOOL1"


def encode(r: Record) -> bytes:
    header = r.header()
    header["order"] = list(r.images)
    body = json.dumps(header).encode()
    parts = [MAGIC, struct.pack("<Q", len(body)), body] + [r.images[k] for k in header["order"]]
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return b"".join(parts) + h.digest()


def decode(data: bytes) -> Record:
    if len(data) < len(MAGIC) + 8 + 32 or not data.startswith(MAGIC):
        raise InputError("not a spool record (bad magic or too short)")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise InputError("spool record checksum mismatch (truncated or corrupted on disk)")
    (n,) = struct.unpack_from("<Q", data, len(MAGIC))
    pos = len(MAGIC) + 8
    header = json.loads(data[pos:pos + n])
    pos += n
    images = {}
    for key in header["order"]:
        size = header["images"][key]
        images[key] = data[pos:pos + size]
        pos += size
    if pos != len(data) - 32:
        raise InputError("spool record sizes do not add up")
    return Record(header["id"], header["module"], header["side_name"], header["side"], images, header["uploaded_by"])


class Spool:
    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        self.failed_folder = os.path.join(self.folder, "failed")
        self._lock = threading.Lock()
        self._seqs: list[int] = []
        self._sizes: dict[int, int] = {}
        self._next = 1
        self._bytes = 0
        self._vanished = 0            # records gone from the folder under us (removed by hand): lost
        self._lockfile = None

    def open(self) -> "Spool":
        try:
            os.makedirs(self.failed_folder, exist_ok=True)
            self._lockfile = open(os.path.join(self.folder, ".lock"), "a+")
        except OSError as err:
            raise ConfigError(f"cannot use spool folder {self.folder}: {err.strerror}") from err
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._lockfile.close()
            self._lockfile = None
            raise ConfigError(f"spool folder {self.folder} is in use by another vi_stream process") from err
        seqs = []
        for name in os.listdir(self.folder):
            path = os.path.join(self.folder, name)
            if name.endswith(".tmp"):
                os.unlink(path)  # an append cut short by a crash: that record was never acknowledged as spooled
            elif name.endswith(".rec") and name[:-4].isdigit():
                seqs.append(int(name[:-4]))
                self._sizes[seqs[-1]] = os.path.getsize(path)
                self._bytes += self._sizes[seqs[-1]]
        done = [int(n[:-4]) for n in os.listdir(self.failed_folder) if n.endswith(".rec") and n[:-4].isdigit()]
        self._seqs = sorted(seqs)
        self._next = max(self._seqs + done + [0]) + 1
        return self

    def close(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    def _path(self, seq: int) -> str:
        return os.path.join(self.folder, f"{seq:012d}.rec")

    @property
    def pending(self) -> int:
        return len(self._seqs)

    @property
    def bytes(self) -> int:
        return self._bytes

    def failed(self) -> int:
        """Results set aside in ``failed/`` (this run and earlier ones): each has a ``.reason`` file."""
        try:
            return sum(1 for n in os.listdir(self.failed_folder) if n.endswith(".reason"))
        except OSError:
            return 0

    def append(self, r: Record) -> int:
        """Durably add ``r`` at the end (OSError if the disk refuses: the caller keeps the record)."""
        data = encode(r)
        with self._lock:
            seq = self._next
            try:
                write_durably(self._path(seq), data)
            except FileNotFoundError:
                # The folder was removed under us: make it again (what it held is gone, and head() says
                # so) rather than hold every new result in memory until a person notices.
                os.makedirs(self.failed_folder, exist_ok=True)
                log.error("spool folder %s was removed while in use: made again; the results it held are lost",
                          self.folder)
                write_durably(self._path(seq), data)
            fsync_dir(self.folder)
            self._next += 1
            self._seqs.append(seq)
            self._sizes[seq] = len(data)
            self._bytes += len(data)
        return seq

    def head(self, n: int) -> list[tuple[int, Record | InputError]]:
        """The oldest ``n`` records, in order; an unreadable one comes back as its error."""
        with self._lock:
            seqs = self._seqs[:n]
        out: list[tuple[int, Record | InputError]] = []
        for seq in seqs:
            try:
                with open(self._path(seq), "rb") as f:
                    out.append((seq, decode(f.read())))
            except FileNotFoundError:
                self._forget(seq)           # removed by hand: counted by take_vanished(), never retried
            except (InputError, ValueError, KeyError) as err:
                out.append((seq, InputError(f"spool record {seq}: {err}")))
        return out

    def _forget(self, seq: int) -> None:
        with self._lock:
            if seq in self._sizes:
                self._seqs.remove(seq)
                self._bytes -= self._sizes.pop(seq)
                self._vanished += 1

    def take_vanished(self) -> int:
        """How many records went missing from the folder since the last call (the writer counts them lost)."""
        with self._lock:
            n, self._vanished = self._vanished, 0
        return n

    def remove(self, seq: int) -> None:
        """The record is in the store: forget it."""
        with self._lock:
            path = self._path(seq)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass                      # stored, and then the folder went: nothing left to forget but the entry
            self._seqs.remove(seq)
            self._bytes -= self._sizes.pop(seq)

    def note_unrenderable(self, name: str, reason: str) -> str:
        """A result that could not even be rendered into a record: a ``failed/<name>.reason`` file
        saying which frame and why, so a person sees it beside the records set aside."""
        path = os.path.join(self.failed_folder, f"{name}.reason")
        write_durably(path, (reason + "\n").encode())
        return path

    def set_aside(self, seq: int, reason: str) -> str:
        """Move a record the store cannot take to ``failed/`` with a ``.reason`` file; returns its new path."""
        with self._lock:
            src = self._path(seq)
            dst = os.path.join(self.failed_folder, os.path.basename(src))
            os.makedirs(self.failed_folder, exist_ok=True)
            with open(dst[:-4] + ".reason", "w") as f:
                f.write(reason + "\n")
            os.replace(src, dst)
            self._seqs.remove(seq)
            self._bytes -= self._sizes.pop(seq)
        return dst
