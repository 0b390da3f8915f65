"""Noticing that a local store's files went away under a running process, and coming back.

SQLite keeps writing to a catalogue that was deleted (``rm -rf`` of the store folder, a
restore over it) as if nothing happened. :class:`FolderGuard`, mixed into
:class:`~vi_stream.store.local.LocalStore`, remembers the device and inode of the folder
and of the catalogue when opened and checks them at every use (two ``stat`` calls), before a
transaction and after its commit. When they differ the store is *lost*: every call raises
StoreUnavailable (the writer spools, REST answers 503) naming what went, until a valid store is
at the path again: a catalogue found there is reopened (after ``PRAGMA quick_check``), an
empty folder is initialised afresh with a warning that the old store's contents are gone, a
folder with other things in it is left alone. The guard never recreates the folder itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from typing import Iterator

from vi_stream.errors import ConfigError, StoreUnavailable

CATALOGUE = "catalogue.sqlite"
log = logging.getLogger("vi_stream.store")


def ident(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path``; None if it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class FolderGuard:
    """Needs ``folder``, ``_db``, ``_lock``, ``_identity``, ``_lost``, ``_db_path``, ``_connect()``
    and ``_ensure_schema()`` from the store it is mixed into."""

    def _problem(self) -> str | None:
        """Why the folder or catalogue in use is not the one opened any more (None: it is)."""
        if self._identity is None:
            return None
        folder, db = self._identity
        now_folder, now_db = ident(self.folder), ident(self._db_path)
        if now_folder is None:
            return f"its folder {self.folder} was removed while in use"
        if now_folder != folder:
            return f"its folder {self.folder} was removed and replaced while in use"
        if now_db is None:
            return f"its catalogue {self._db_path} was removed while in use"
        if now_db != db:
            return f"its catalogue {self._db_path} was removed and replaced while in use"
        return None

    def _lose(self, problem: str) -> None:
        """Under the lock: stop using a store whose files are gone, and say so once."""
        self._lost = (f"local store: {problem}; results go to the spool until a store is at {self.folder} "
                      "again (an empty folder there starts a new one)")
        log.error("%s", self._lost)
        if self._db is not None:
            self._db.close()
            self._db = None
        self._identity = None

    def _live(self) -> None:
        """Under the lock: make sure ``self._db`` is the catalogue at the path, reconnecting to a
        store put back there; StoreUnavailable if there is none."""
        if self._db is not None:
            problem = self._problem()
            if problem is None:
                return
            self._lose(problem)
        if self._lost is None:
            raise StoreUnavailable(f"local store {self.folder} is not open")
        if not os.path.isdir(self.folder):
            raise StoreUnavailable(self._lost)
        fresh = not os.path.exists(self._db_path)
        if fresh:
            try:
                left = os.listdir(self.folder)
            except OSError as err:
                raise StoreUnavailable(f"{self._lost}; cannot list {self.folder}: {err}") from err
            if left:
                raise StoreUnavailable(f"{self._lost}; {self.folder} is there again but holds no {CATALOGUE} "
                                       f"and is not empty ({', '.join(sorted(left)[:5])}): restore the store "
                                       "there or empty the folder")
        try:
            os.makedirs(os.path.join(self.folder, "images"), exist_ok=True)
            self._db = self._connect()
            self._ensure_schema()
        except (ConfigError, OSError, sqlite3.Error) as err:
            if self._db is not None:
                self._db.close()
                self._db = None
            raise StoreUnavailable(f"{self._lost}; the store put back there cannot be used: {err}") from err
        self._lost = None
        if fresh:
            log.warning("local store %s initialised afresh in the empty folder put back there: the previous "
                        "store's results, images, models and aliases are gone (it was removed while in use); "
                        "the spool replays into the new one", self.folder)
        else:
            log.warning("local store %s is back: reopened the catalogue found there", self.folder)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The lock, with ``self._db`` checked to be the store at the path (StoreUnavailable if not); yields it."""
        with self._lock:
            self._live()
            yield self._db

    def check(self) -> None:
        """StoreUnavailable if the store's files are gone (the writer asks when idle, to report it)."""
        with self._locked():
            pass
